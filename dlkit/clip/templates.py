"""Prompt templates: named sets, files (one template per line) and literal strings, each with `{}` where
the class name goes. `imagenet80` is open_clip's copy of OpenAI's 80 ImageNet prompts, read from open_clip
rather than copied here."""

from __future__ import annotations

from pathlib import Path

from dlkit.core.errors import ConfigError

SIMPLE = ("a photo of a {}.",)
DOGS = (
    "a photo of a {}.",
    "a photo of a {}, a type of dog.",
    "a photo of the {}, a dog breed.",
    "a close-up photo of a {} dog.",
    "a photo of my {}.",
    "a blurry photo of a {}, a type of dog.",
    "a {} dog playing outside.",
    "a photo of a small {}, a type of dog.",
    "a photo of a large {}, a type of dog.",
)


def set_names() -> list[str]:
    return ["simple", "imagenet80", "dogs"]


def named_set(name: str) -> list[str] | None:
    if name == "simple":
        return list(SIMPLE)
    if name == "dogs":
        return list(DOGS)
    if name == "imagenet80":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]  # the lambdas with '{}' as the class
    return None


def resolve_templates(values: list[str], flag: str = "--templates") -> list[str]:
    """Each value is a set name, a file or a literal template; the results are concatenated in order."""
    out: list[str] = []
    for value in values:
        out.extend(resolve_one(value, flag))
    if not out:
        raise ConfigError(f"{flag}: no templates given")
    return out


def resolve_one(value: str, flag: str = "--templates") -> list[str]:
    named = named_set(value.strip())
    if named is not None:
        return named
    path = Path(value).expanduser()
    if path.is_file():
        return read_template_file(path, flag)
    check_template(value, flag)
    return [value]


def read_template_file(path: Path, flag: str) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    templates = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        check_template(line.strip(), flag, where=f"{path}:{lineno}")
        templates.append(line.strip())
    if not templates:
        raise ConfigError(f"{flag} {path}: the file holds no templates (one per line, each with {{}})")
    return templates


def check_template(template: str, flag: str, where: str | None = None) -> None:
    if "{}" not in template:
        at = f" ({where})" if where else ""
        raise ConfigError(
            f"{flag}: template {template!r}{at} has no {{}} for the class name; "
            f"write e.g. 'a photo of a {{}}.' or name a set ({', '.join(set_names())})"
        )


def fill(template: str, classname: str) -> str:
    return template.replace("{}", classname)
