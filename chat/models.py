"""Conversations and their messages; each belongs to one user and is visible to that user only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from inference.answers import AnswerStatus, token_usage


class Conversation(models.Model):
    """A chat thread with its own settings (model, system prompt, sampling, reasoning effort)."""

    class Effort(models.TextChoices):
        DEFAULT = "", "model default"
        LOW = "low", "low"
        MEDIUM = "medium", "medium"
        HIGH = "high", "high"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Served model name; empty picks any ready engine.")
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_effort = models.CharField(max_length=10, choices=Effort.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="chat_conv_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def settings_dict(self) -> dict[str, Any]:
        """The per-conversation parameters, in the shape the chat page and ``chat.send`` use."""
        return {
            "model": self.model,
            "system": self.system_prompt,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "reasoning_effort": self.reasoning_effort,
        }


class Message(models.Model):
    """One turn: a user's question or an assistant's answer (with its reasoning kept apart)."""

    class Role(models.TextChoices):
        USER = "user", "user"
        ASSISTANT = "assistant", "assistant"

    # The status words are the generation's (defined once, in inference/answers.py).
    Status = AnswerStatus

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    model = models.CharField(max_length=200, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(
        default=False, help_text="The engine sent no usage (a stopped answer): tokens were counted from the stream."
    )
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token, milliseconds.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the web process writing this answer."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["conversation", "status"], name="chat_msg_conv_status")]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk}"

    def as_dict(self) -> dict[str, Any]:
        """The message as the chat page renders it (history and live answers share this shape)."""
        return {
            "id": self.pk,
            "role": self.role,
            "content": self.content,
            "reasoning": self.reasoning,
            "status": self.status,
            "model": self.model,
            "usage": token_usage(self.prompt_tokens, self.completion_tokens, self.usage_estimated),
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "finish_reason": self.finish_reason,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
        }


class ConversationRecord(Conversation):
    """A conversation as staff see it in Django admin: named by number, never by its title."""

    class Meta:
        proxy = True
        verbose_name = "conversation"

    def __str__(self) -> str:
        return f"Conversation {self.pk}"
