"""Messages in Chinese and English: gettext catalogs (compiled with Babel) and the choice of language.

The language is chosen, first match wins, by ``--lang`` (which sets ``EDX_AGENT_LANG``), the
``EDX_AGENT_LANG`` environment variable, the configuration's ``agent.lang`` (given to ``setup()`` by the
CLI), and the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, ``LANGUAGE``: ``zh_CN.UTF-8`` gives Chinese).
English is the source language: its messages are the msgids in the code.

``_()`` translates at call time, so a message follows the language even if it was chosen after the
module that holds the message was imported. Error templates are translated when an error is rendered
(``AgentError.__str__``), never when it is raised; error codes are the same in every language.

The catalog is ``agent/locale/zh_CN/LC_MESSAGES/edx_agent.po`` (compiled to ``.mo``);
``scripts/i18n.sh`` extracts, updates and compiles it.
"""

from __future__ import annotations

import gettext
import os
import tomllib
from functools import lru_cache
from pathlib import Path

DOMAIN = "edx_agent"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("zh", "en")
# the catalog directory of each language; English needs none (the msgids are English)
_CATALOG = {"zh": "zh_CN"}

_config_lang: str | None = None


def _normalise(value: str | None) -> str | None:
    """'zh', 'zh_CN.UTF-8', 'zh-Hans', 'en_US' -> 'zh' or 'en'; 'auto', '', 'C', unknown -> None."""
    if not value:
        return None
    v = value.strip().lower()
    if v.startswith("zh"):
        return "zh"
    if v.startswith("en"):
        return "en"
    return None


def _from_locale() -> str:
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:  # the first one set decides, as in POSIX
            return _normalise(value) or "en"
    for part in os.environ.get("LANGUAGE", "").split(":"):  # GNU extension: a priority list
        if lang := _normalise(part):
            return lang
    return "en"


def current_language() -> str:
    """'zh' or 'en', from --lang / EDX_AGENT_LANG, then the config's agent.lang, then the locale."""
    return _normalise(os.environ.get("EDX_AGENT_LANG")) or _config_lang or _from_locale()


def set_config_language(lang: str | None) -> None:
    """The configuration's ``agent.lang`` ("auto", "zh" or "en"); "auto" defers to the locale."""
    global _config_lang
    _config_lang = _normalise(lang)


def setup(cli_lang: str | None = None, config_path: str | os.PathLike[str] | None = None) -> str:
    """Choose the language for this process; returns it.

    ``cli_lang`` is ``--lang``; it is exported as ``EDX_AGENT_LANG`` so that child processes speak the
    same language. The config file's ``agent.lang`` is read leniently here (a broken config must still
    be reported in the operator's language; ``check`` reports the breakage itself).
    """
    if cli_lang:
        os.environ["EDX_AGENT_LANG"] = cli_lang
    path = config_path or os.environ.get("EDX_AGENT_CONFIG") or "/etc/edx-agent/agent.toml"
    try:
        with open(path, "rb") as f:
            agent = tomllib.load(f).get("agent", {})
        set_config_language(agent.get("lang") if isinstance(agent, dict) else None)
    except (OSError, ValueError, TypeError):
        set_config_language(None)
    return current_language()


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of a language (NullTranslations for English or a missing catalog)."""
    catalog = _CATALOG.get(lang)
    if not catalog:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[catalog], fallback=True)


def _(message: str) -> str:
    """``message`` (an English msgid) in the current language; unknown messages stay English."""
    if not message:
        return message
    return translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for ``n``, in the current language."""
    return translations(current_language()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for extraction without translating it now (it is translated when shown)."""
    return message
