"""What the accounts app stores beyond Django's user and allauth's tables: sign-ups, policies, the usage ledger."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class SelfSignUp(models.Model):
    """A user who created their own account through open sign-up.

    Only these users must verify their e-mail address before logging in
    (``accounts.stages.EmailVerificationStage``); accounts made by an admin or by
    ``manage.py bootstrap`` have no row here and may have no mailbox at all.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="self_sign_up"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "self sign-up"

    def __str__(self) -> str:
        return f"{self.user} signed up on {self.created_at:%Y-%m-%d}"


class PasswordChangeRequired(models.Model):
    """A user who must choose a new password before reaching any page.

    ``manage.py bootstrap`` marks the first admin, whose generated password was printed to
    a terminal (and may sit in a scroll-back or a log). ``accounts.required_steps`` sends the
    user to the password change page while the row exists; changing, setting or resetting
    the password deletes it (``accounts.signals``).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="password_change_required"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "required password change"

    def __str__(self) -> str:
        return f"{self.user} must change their password"


class ApiKey(models.Model):
    """A personal key for the ``/v1`` API: it acts as its owner, within its own limits.

    Only a keyed hash of the secret is stored (``accounts/api_keys.py`` says why); the
    ``prefix`` is the public part of the key, kept to recognise it in lists and the audit
    trail. An empty ``model_names`` list means every model the owner may use.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    model_names = models.JSONField(default=list, blank=True, help_text="Served model names; empty: all allowed models.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


# --- Policies (accounts/policies.py reads them) ------------------------------------------
# Bounds that refuse absurd values with the field named; null means unlimited.
MAX_TOKENS_PER_PERIOD = 10**12
MAX_REQUESTS_PER_PERIOD = 10**9
MAX_CONCURRENT_ANSWERS = 10_000
MAX_TOKENS_PER_ANSWER = 10_485_760  # vLLM's largest context, as EngineConfig.max_model_len
PRIORITY_RANGE = (-1_000_000, 1_000_000)


def _limit(maximum: int, help_text: str, *, minimum: int = 0) -> models.PositiveBigIntegerField[int | None, int | None]:
    return models.PositiveBigIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(minimum), MaxValueValidator(maximum)],
        help_text=f"{help_text} Empty: unlimited.",
    )


class Policy(models.Model):
    """What a group (or one user) may use: models, token budgets, request rates, concurrency, priority.

    Every limit is nullable: null is unlimited. Which policy applies to a user is decided in
    ``accounts.policies.effective_policy``.
    """

    name = models.CharField(max_length=100, unique=True)
    all_models = models.BooleanField(default=True, help_text="May use every served model.")
    model_names = models.JSONField(
        default=list,
        blank=True,
        help_text="Served model names this policy may use when 'all models' is off.",
    )
    tokens_per_day = _limit(MAX_TOKENS_PER_PERIOD, "Prompt and answer tokens per day (site time zone).")
    tokens_per_month = _limit(MAX_TOKENS_PER_PERIOD, "Prompt and answer tokens per calendar month.")
    requests_per_day = _limit(MAX_REQUESTS_PER_PERIOD, "Answers started per day.")
    requests_per_minute = _limit(MAX_REQUESTS_PER_PERIOD, "Answers started per minute.")
    concurrent_answers = _limit(MAX_CONCURRENT_ANSWERS, "Answers being written at once.", minimum=1)
    max_tokens_per_answer = _limit(MAX_TOKENS_PER_ANSWER, "Most tokens one answer may have.", minimum=1)
    max_prompt_tokens = _limit(MAX_TOKENS_PER_ANSWER, "Most tokens one prompt may have.", minimum=1)
    priority = models.IntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(PRIORITY_RANGE[0]), MaxValueValidator(PRIORITY_RANGE[1])],
        help_text="vLLM priority on engines with priority scheduling; lower is served first. Empty: not sent.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse unknown model names, listing the served ones (``ValidationError`` on ``models``)."""
        from accounts.policies import check_models

        check_models(self.all_models, self.model_names)


class GroupPolicy(models.Model):
    """The policy of a group; a user in several groups gets the most generous of them, field by field."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, primary_key=True, related_name="policy_assignment")
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="group_assignments")

    class Meta:
        verbose_name = "group policy"
        verbose_name_plural = "group policies"

    def __str__(self) -> str:
        return f"{self.group}: {self.policy}"


class UserPolicy(models.Model):
    """A per-user override: when set, it is the user's policy, whatever their groups say."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="policy_override"
    )
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="user_overrides")

    class Meta:
        verbose_name = "user policy override"

    def __str__(self) -> str:
        return f"{self.user}: {self.policy}"


# --- The usage ledger (accounts/ledger.py writes it) -------------------------------------
class UsageCounter(models.Model):
    """One row per user: what the current periods used and what is reserved but not settled.

    ``reserve`` locks this row (the ledger's only lock), so two admissions of one user are
    serialised and the budget check and the reservation are one step. The periods roll over
    lazily: a row whose ``day`` is not today counts zero for today.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="usage_counter"
    )
    day = models.DateField(null=True)
    day_tokens = models.BigIntegerField(default=0)
    day_requests = models.BigIntegerField(default=0)
    month = models.DateField(null=True)  # the first day of the month
    month_tokens = models.BigIntegerField(default=0)
    minute = models.DateTimeField(null=True)  # start of the current one-minute window
    minute_requests = models.IntegerField(default=0)
    held_tokens = models.BigIntegerField(default=0)  # reserved by answers not settled yet
    active_answers = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held_tokens__gte=0), name="usage_held_not_negative"),
            models.CheckConstraint(condition=models.Q(active_answers__gte=0), name="usage_active_not_negative"),
            models.CheckConstraint(condition=models.Q(day_tokens__gte=0), name="usage_day_not_negative"),
            models.CheckConstraint(condition=models.Q(month_tokens__gte=0), name="usage_month_not_negative"),
        ]

    def __str__(self) -> str:
        return f"usage of {self.user}"


class Reservation(models.Model):
    """Tokens and a concurrency slot held for one answer until it is settled (exactly once)."""

    class Outcome(models.TextChoices):
        COMPLETE = "complete"
        STOPPED = "stopped"
        INTERRUPTED = "interrupted"
        ERROR = "error"
        LOST = "lost"
        CANCELLED = "cancelled"  # never started (e.g. the turn was refused after reserving)

    request_id = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reservations")
    model = models.CharField(max_length=200)
    channel = models.CharField(max_length=16)
    day = models.DateField()  # the site-time-zone day the usage counts for
    prompt_tokens = models.PositiveIntegerField()
    max_tokens = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")
    used_prompt_tokens = models.PositiveIntegerField(default=0)
    used_completion_tokens = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["user", "settled_at"])]

    def __str__(self) -> str:
        return self.request_id

    @property
    def tokens(self) -> int:
        """Tokens held by this reservation."""
        return self.prompt_tokens + self.max_tokens


class DailyUsage(models.Model):
    """The roll-up the reports read: settled usage per user, model, channel and day."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage")
    model = models.CharField(max_length=200)
    channel = models.CharField(max_length=16)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    adjustment_tokens = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "model", "channel", "day"], name="daily_usage_unique"),
        ]
        indexes = [models.Index(fields=["day"])]
        verbose_name_plural = "daily usage"

    def __str__(self) -> str:
        return f"{self.user} {self.model} {self.channel} {self.day}"

    @property
    def total_tokens(self) -> int:
        """Tokens counted against the budget (prompt + completion + manual adjustments)."""
        return self.prompt_tokens + self.completion_tokens + self.adjustment_tokens


class Adjustment(models.Model):
    """An admin's manual correction of a user's usage, with the reason it was made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_adjustments")
    day = models.DateField()
    tokens = models.BigIntegerField(help_text="Added to the day's usage (negative: given back).")
    reason = models.CharField(max_length=500)
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    made_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-made_at"]

    def __str__(self) -> str:
        return f"{self.tokens:+} tokens for {self.user}: {self.reason}"
