"""Which mode a user gets from the plugin's settings."""

from __future__ import annotations

from collections import Counter

import pytest

from pii_guard.guard import describe
from pii_guard.policy import BLOCK, MASK, OFF, PolicyError, kinds, mode_for

SETTINGS = {"default": MASK, "groups": {"Contractors": BLOCK, "Admins": OFF, "Members": MASK}, "kinds": None}


@pytest.mark.parametrize(
    ("groups", "mode"),
    [
        ((), MASK),
        (("Somewhere else",), MASK),
        (("Admins",), OFF),
        (("Admins", "Members"), MASK),
        (("Admins", "Contractors", "Members"), BLOCK),
    ],
)
def test_the_strictest_mode_of_the_users_configured_groups_wins(groups, mode):
    assert mode_for(groups, SETTINGS) == mode


def test_users_in_no_configured_group_get_the_default():
    assert mode_for(["Members"], {"default": BLOCK, "groups": {}}) == BLOCK


@pytest.mark.parametrize(
    "settings",
    [{"default": "maybe", "groups": {}}, {"default": MASK, "groups": {"Members": "MASK"}}, {"groups": ["Members"]}],
)
def test_a_mode_that_does_not_exist_is_an_error_not_a_pass(settings):
    with pytest.raises(PolicyError):
        mode_for(["Members"], settings)


def test_kinds_are_a_list_of_names_or_none():
    assert kinds({"kinds": None}) is None
    assert kinds({"kinds": ["phone"]}) == frozenset({"phone"})
    with pytest.raises(PolicyError):
        kinds({"kinds": "phone"})


def test_findings_are_said_in_words():
    assert describe(Counter({"phone": 1})) == "1 phone number"
    assert describe(Counter({"phone": 2, "email": 1, "iban": 1})) == "1 e-mail address, 1 IBAN and 2 phone numbers"
