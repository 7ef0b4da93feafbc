from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import ratelimits, signals  # noqa: F401 - connect the role signals, register the check
        from portal.navigation import NavItem, register

        register(NavItem("Usage", "accounts:usage", lambda user: bool(user.is_authenticated), order=20))
