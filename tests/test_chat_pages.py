"""The chat page, its JSON API, the navigation entry and the retention command."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from chat.conversations import prompt_messages
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices(alice):
    conversation = Conversation.objects.create(owner=alice, title="Capitals of Europe", system_prompt="Be brief.")
    Message.objects.create(conversation=conversation, role="user", content="Capital of France?")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Paris.", reasoning="The user asks...", ttft_ms=42
    )
    return conversation


def test_members_see_the_chat_in_the_navigation_and_auditors_do_not(client_for, alice, audrey, adam):
    assert b'data-nav="chat:index"' in client_for(alice).get("/").content
    assert b'data-nav="chat:index"' in client_for(adam).get("/").content
    assert b'data-nav="chat:index"' not in client_for(audrey).get("/").content


def test_auditors_get_403_from_the_chat_page_and_its_api(client_for, audrey, alices):
    client = client_for(audrey)
    assert client.get("/chat/").status_code == 403
    assert client.get("/chat/api/conversations/").status_code == 403
    assert client.get(f"/chat/api/conversations/{alices.pk}/").status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/chat/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_chat_page_carries_its_data_as_json_and_loads_only_static_scripts(client_for, alice, alices):
    response = client_for(alice).get(f"/chat/{alices.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="chat-config" type="application/json"' in html
    assert "<script>" not in html
    assert " style=" not in html
    assert "/static/vendor/marked/lib/marked.umd.js" in html
    assert "/static/vendor/dompurify/dist/purify.min.js" in html
    config = json.loads(html.split('id="chat-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["conversation"]["title"] == "Capitals of Europe"
    assert [message["content"] for message in config["conversation"]["messages"]] == ["Capital of France?", "Paris."]
    assert config["conversations"][0]["id"] == alices.pk
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_someone_elses_conversation_is_a_404(client_for, bob, alices):
    client = client_for(bob)
    assert client.get(f"/chat/{alices.pk}/").status_code == 404
    assert client.get(f"/chat/api/conversations/{alices.pk}/").status_code == 404
    assert client.post(f"/chat/api/conversations/{alices.pk}/rename/", "{}", "application/json").status_code == 404
    assert client.post(f"/chat/api/conversations/{alices.pk}/delete/").status_code == 404
    assert Conversation.objects.get(pk=alices.pk).title == "Capitals of Europe"
    assert client.get("/chat/api/conversations/").json() == {"conversations": []}


def test_alice_lists_and_filters_her_conversations_by_title(client_for, alice, alices):
    Conversation.objects.create(owner=alice, title="Python help")
    client = client_for(alice)
    titles = [item["title"] for item in client.get("/chat/api/conversations/").json()["conversations"]]
    assert titles == ["Python help", "Capitals of Europe"]
    filtered = client.get("/chat/api/conversations/", {"q": "capital"}).json()["conversations"]
    assert [item["title"] for item in filtered] == ["Capitals of Europe"]


def test_alice_loads_renames_and_deletes_a_conversation(client_for, alice, alices):
    client = client_for(alice)
    detail = client.get(f"/chat/api/conversations/{alices.pk}/").json()["conversation"]
    assert detail["settings"]["system"] == "Be brief."
    assert detail["messages"][1]["reasoning"] == "The user asks..."
    assert detail["messages"][1]["ttft_ms"] == 42
    renamed = client.post(f"/chat/api/conversations/{alices.pk}/rename/", {"title": "  France "}, "application/json")
    assert renamed.json() == {"id": alices.pk, "title": "France"}
    assert (
        client.post(f"/chat/api/conversations/{alices.pk}/rename/", {"title": " "}, "application/json").status_code
        == 400
    )
    assert client.post(f"/chat/api/conversations/{alices.pk}/delete/").json() == {"deleted": alices.pk}
    assert not Conversation.objects.filter(pk=alices.pk).exists()
    assert not Message.objects.exists()


def test_changes_need_post_and_a_csrf_token(alice, alices):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get(f"/chat/api/conversations/{alices.pk}/delete/").status_code == 405
    assert client.post(f"/chat/api/conversations/{alices.pk}/delete/").status_code == 403
    assert Conversation.objects.filter(pk=alices.pk).exists()


def test_the_prompt_leaves_out_reasoning_and_empty_answers(alices):
    Message.objects.create(conversation=alices, role="user", content="And Italy?")
    Message.objects.create(conversation=alices, role="assistant", content="", status="error")
    messages = prompt_messages(alices, list(alices.messages.all()))
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Italy?"},
    ]


def test_retention_deletes_conversations_older_than_the_setting(alice, alices, settings):
    old = Conversation.objects.create(owner=alice, title="old")
    Message.objects.create(conversation=old, role="user", content="long ago")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
    settings.CHAT_RETENTION_DAYS = 30
    call_command("purgechats")
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Capitals of Europe"]
    assert Message.objects.count() == 2


def test_retention_keeps_answers_still_being_written(alice, settings):
    old = Conversation.objects.create(owner=alice, title="old but busy")
    Message.objects.create(conversation=old, role="assistant", status="streaming")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
    call_command("purgechats", days=30)
    assert Conversation.objects.filter(pk=old.pk).exists()


def test_retention_deletes_conversations_whose_answer_was_lost_with_its_process(alice, settings):
    old = Conversation.objects.create(owner=alice, title="orphaned")
    long_ago = timezone.now() - timedelta(days=31)
    Message.objects.create(conversation=old, role="assistant", status="streaming", heartbeat_at=long_ago)
    Conversation.objects.filter(pk=old.pk).update(updated_at=long_ago)
    call_command("purgechats", days=30)
    assert not Conversation.objects.filter(pk=old.pk).exists()


def test_retention_off_deletes_nothing(alice, settings, capsys):
    old = Conversation.objects.create(owner=alice, title="old")
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=3650))
    settings.CHAT_RETENTION_DAYS = 0
    call_command("purgechats")
    assert Conversation.objects.filter(pk=old.pk).exists()
    assert "Retention is off" in capsys.readouterr().out
