"""The method grammar: every name parses to its steps, bad names fail."""
import pytest

from app.describe.methods import UnknownMethod, augmented_name, get_method, whitened_name


# name -> (canonical, whiten, dba, qe, local kind, stored method column, raw, longest side)
EXPECTED = {
    "global": ("global", False, False, False, None, "global", "global", 512),
    "gem": ("gem", False, False, False, None, "gem", "gem", 512),
    "gem-ms": ("gem-ms", False, False, False, None, "gem-ms", "gem-ms", 768),
    "rmac": ("rmac", False, False, False, None, "rmac", "rmac", 512),
    "gem+w": ("gem+w", True, False, False, None, "gem+w", "gem", 512),
    "gem+qe": ("gem+qe", False, False, True, None, "gem", "gem", 512),
    "gem+w+qe+sift": ("gem+w+qe+sift", True, False, True, "sift", "gem+w", "gem", 512),
    "rmac+orb": ("rmac+orb", False, False, False, "orb", "rmac", "rmac", 512),
    "verified": ("gem+sift", False, False, False, "sift", "gem", "gem", 512),
    "gem+dba": ("gem+dba", False, True, False, None, "gem+dba", "gem", 512),
    "gem+w+dba+qe+sift": ("gem+w+dba+qe+sift", True, True, True, "sift", "gem+w+dba", "gem", 512),
    "gem@768": ("gem@768", False, False, False, None, "gem@768", "gem@768", 768),
    "gem-ms@1024+w+sift": ("gem-ms@1024+w+sift", True, False, False, "sift", "gem-ms@1024+w", "gem-ms@1024", 1024),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_method_names_parse_to_their_steps(name):
    m = get_method(name)
    local = m.local.name if m.local else None
    assert (m.canonical, m.whiten, m.dba, m.qe, local, m.stored, m.raw, m.descriptor.longest) == EXPECTED[name]
    assert m.name == name and get_method(m.canonical).canonical == m.canonical


def test_stored_names_are_composed_in_one_place():
    assert whitened_name("gem@768") == "gem@768+w" and augmented_name("gem+w") == "gem+w+dba"
    assert get_method(augmented_name(whitened_name("gem"))).stored == "gem+w+dba"


@pytest.mark.parametrize("name", ["sift", "gem+sift+orb", "gem+sift+w", "gem+x", "global; DROP TABLE images", "",
                                  "rmac+dba", "gem+dba+w", "gem@", "gem@abc", "global@512", "gem@99999", "gem@0768",
                                  "gem@768@5", "gem@32"])
def test_bad_method_names_fail(name):
    with pytest.raises(UnknownMethod):
        get_method(name)
