// The dummy plugin's composer action: insert the text its declaration carries.
export function run(composer, action) {
  composer.insertText(action.data.text);
}
