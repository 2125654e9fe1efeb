"""Library combinations known to break a dlkit feature, in ONE table read by `dlkit info` (which flags them)
and by the features themselves (which refuse in one line instead of giving a wrong answer).

DESIGN.md section 7 has the traced facts behind each entry. pyproject.toml's ranges keep a plain install
away from all of them; this table catches a forced install (`pip install transformers==X` on top).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from dlkit.core.errors import ConfigError


@dataclass(frozen=True)
class KnownBad:
    when: tuple[str, ...]  # requirement strings that must ALL match the installed versions
    feature: str  # the key a feature checks with refuse_known_bad()
    what: str  # what breaks, in a few words
    fix: str

    def matches(self) -> bool:
        return all(_installed_matches(req) for req in self.when)

    def line(self) -> str:
        versions = ", ".join(f"{_name(req)} {installed_version(_name(req))}" for req in self.when)
        return f"{self.what} with {versions}; fix: {self.fix}"


KNOWN_BAD: tuple[KnownBad, ...] = (
    # dlkit.llm.generate maps transformers >= 5.24's `cache` to the `past_key_values` that peft <= 0.21
    # reads; a peft that reads `cache` itself is untested with that mapping.
    KnownBad(
        ("transformers>=5.24", "peft>=0.22"),
        "soft-prompt-generate",
        "soft-prompt generation (prompt/prefix/ptuning) is unverified",
        "pip install 'peft<0.22'",
    ),
    KnownBad(
        ("transformers>=5.40",),
        "prefix-train",
        "prefix tuning trains through the `past_key_values` forward kwarg that transformers 5.40 removed",
        "pip install 'transformers<5.25'",
    ),
)


def installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def version_at_least(dist: str, minimum: str) -> bool:
    """Whether `dist` is installed at `minimum` or newer."""
    return _installed_matches(f"{dist}>={minimum}")


def _name(req: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(req).name


def _installed_matches(req: str) -> bool:
    from packaging.requirements import Requirement

    parsed = Requirement(req)
    found = installed_version(parsed.name)
    return found is not None and parsed.specifier.contains(found, prereleases=True)


def known_bad() -> list[str]:
    """One line per known-bad combination among the installed versions."""
    return [bad.line() for bad in KNOWN_BAD if bad.matches()]


def refuse_known_bad(feature: str) -> None:
    """Raise a one-line ConfigError (exit 2) when the installed versions are known to break `feature`."""
    for bad in KNOWN_BAD:
        if bad.feature == feature and bad.matches():
            raise ConfigError(bad.line())


def outside_range(requirements: list[str] | None = None) -> list[str]:
    """One line per installed dependency whose version is outside the range dlkit declares for it
    (`requirements`: dlkit's installed metadata by default)."""
    from packaging.requirements import Requirement

    lines, seen = [], set()
    for text in metadata.requires("dlkit") or [] if requirements is None else requirements:
        req = Requirement(text)
        found = installed_version(req.name)
        if req.name == "dlkit" or req.name in seen or found is None or not req.specifier:
            continue
        seen.add(req.name)
        if not req.specifier.contains(found, prereleases=True):
            lines.append(
                f"{req.name} {found} is outside dlkit's tested range {req.specifier}; "
                f"fix: pip install -c requirements/lock.txt -e '.[all]'"
            )
    return lines
