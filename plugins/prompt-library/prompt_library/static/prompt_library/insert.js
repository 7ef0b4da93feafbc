/* The prompt library's "Insert template" action in the chat composer (chat.composer_actions).
 *
 * The portal imports this module when the button is pressed and calls run(composer, action):
 * it lists the templates the user may use, asks for the values of the chosen one's
 * {{variables}} and inserts the filled-in text at the composer's cursor. Everything is
 * built with DOM calls (no HTML strings), so a template's text can never become markup.
 */
const VARIABLE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

function node(tag, className, text) {
  const element = document.createElement(tag);
  if (className) { element.className = className; }
  if (text !== undefined) { element.textContent = text; }
  return element;
}

export function fill(body, values) {
  return body.replace(VARIABLE, (match, name) => (name in values ? values[name] : match));
}

function loadStyles() {
  const href = new URL("./insert.css", import.meta.url).href;
  if (!document.querySelector(`link[href="${href}"]`)) {
    const link = node("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }
}

function showList(dialog, templates, choose, library) {
  dialog.replaceChildren(node("h2", null, "Insert a template"));
  if (!templates.length) {
    const empty = node("p", null, "No templates yet. ");
    const link = node("a", null, "Write one in the prompt library.");
    link.href = library;
    empty.appendChild(link);
    dialog.appendChild(empty);
  }
  const list = node("ul");
  templates.forEach(function (template) {
    const item = node("li");
    const button = node("button", "secondary", template.title);
    button.type = "button";
    button.dataset.template = template.id;
    button.addEventListener("click", () => choose(template));
    item.appendChild(button);
    list.appendChild(item);
  });
  dialog.appendChild(list);
}

function showForm(dialog, template, insert) {
  dialog.replaceChildren(node("h2", null, template.title));
  const values = {};
  const preview = node("div", "preview");
  const update = () => { preview.textContent = fill(template.body, values); };
  template.variables.forEach(function (name, index) {
    const field = node("div", "field");
    const label = node("label", null, name);
    const input = node("input");
    input.type = "text";
    input.id = `prompt-variable-${index}`;
    input.name = name;
    label.htmlFor = input.id;
    input.addEventListener("input", function () { values[name] = input.value; update(); });
    field.append(label, input);
    dialog.appendChild(field);
  });
  dialog.appendChild(preview);
  update();
  const actions = node("div", "actions");
  const cancel = node("button", "secondary", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => dialog.close());
  const confirm = node("button", null, "Insert");
  confirm.type = "button";
  confirm.className = "insert-template";
  confirm.addEventListener("click", () => insert(fill(template.body, values)));
  actions.append(cancel, confirm);
  dialog.appendChild(actions);
  const first = dialog.querySelector("input");
  (first || confirm).focus();
}

export async function run(composer, action) {
  loadStyles();
  const response = await fetch(action.data.api, { credentials: "same-origin" });
  if (!response.ok) {
    composer.notify("The prompt library could not be loaded.", "error");
    return;
  }
  const { templates } = await response.json();
  const dialog = node("dialog", "prompt-dialog");
  dialog.addEventListener("close", () => dialog.remove());
  document.body.appendChild(dialog);
  const insert = function (text) {
    dialog.close();
    composer.insertText(text);
  };
  showList(dialog, templates, (template) => showForm(dialog, template, insert), action.data.library);
  dialog.showModal();
}
