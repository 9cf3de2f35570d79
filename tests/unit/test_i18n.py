"""Chinese and English messages: the language choice, errors translated when shown, a complete catalog.

The catalog is read here without Babel (a test dependency the agent does not need): a small .po
reader is enough to check that every msgid has a translation and the compiled .mo matches it.
"""

from __future__ import annotations

import ast
import gettext
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

from agent import errors, i18n
from agent.envelope import errors as envelope_errors

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "agent" / "locale" / "zh_CN" / "LC_MESSAGES" / "edx_agent.po"
MO = PO.with_suffix(".mo")
CJK = re.compile(r"[\u4e00-\u9fff]")


def read_po(path: Path) -> list[dict]:
    """Entries of a .po file: msgid, msgstr (plural forms joined), flags."""
    entries: list[dict] = []
    cur: dict | None = None
    field = None
    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if not line:
            if cur and "msgid" in cur:
                entries.append(cur)
            cur, field = None, None
            continue
        cur = cur if cur is not None else {"flags": set(), "msgstr": ""}
        if line.startswith("#,"):
            cur["flags"] |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif m := re.match(r'^(msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+(".*")$', line):
            field = "msgstr" if m.group(1).startswith("msgstr") else m.group(1)
            cur[field] = cur.get(field, "") if field == "msgstr" else ""
            cur[field] += ast.literal_eval(m.group(2))
        elif line.startswith('"') and field:
            cur[field] += ast.literal_eval(line)
    return entries


def run_cli(*argv: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE",
                                                              "EDX_AGENT_LANG", "EDX_AGENT_CONFIG")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


@pytest.fixture
def lang_env(monkeypatch: pytest.MonkeyPatch):
    for var in ("LANG", "LC_ALL", "LC_MESSAGES", "LANGUAGE", "EDX_AGENT_LANG"):
        monkeypatch.delenv(var, raising=False)
    i18n.set_config_language(None)
    yield monkeypatch
    i18n.set_config_language(None)


# --- the catalog -------------------------------------------------------------------------------

def test_every_msgid_has_a_translation_and_none_is_fuzzy() -> None:
    entries = [e for e in read_po(PO) if e["msgid"]]
    assert len(entries) > 150
    untranslated = [e["msgid"] for e in entries if not e["msgstr"]]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert not untranslated, f"translate these (scripts/i18n.sh update): {untranslated}"
    assert not fuzzy, f"review these fuzzy translations: {fuzzy}"
    for e in entries:  # a translation keeps the placeholders its message is formatted with
        fields = lambda s: sorted(f for _, f, _, _ in string.Formatter().parse(s) if f)  # noqa: E731
        assert fields(e["msgstr"]) == fields(e["msgid"]), e["msgid"]
        if re.search(r"[A-Za-z]", re.sub(r"\{[^}]*\}", "", e["msgid"])):   # has words, not only punctuation
            assert CJK.search(e["msgstr"]), f"not Chinese: {e['msgid']!r} -> {e['msgstr']!r}"


def test_the_compiled_catalog_matches_the_po() -> None:
    with open(MO, "rb") as f:
        compiled = gettext.GNUTranslations(f)
    for e in read_po(PO):
        if e["msgid"]:
            assert compiled.gettext(e["msgid"]) == e["msgstr"], f"stale .mo: run scripts/i18n.sh compile ({e['msgid']!r})"


def error_classes() -> list[type[errors.AgentError]]:
    found, todo = [], [errors.AgentError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__ in (errors.__name__, envelope_errors.__name__)]


def test_every_error_of_the_core_trees_is_translated(lang_env) -> None:
    lang_env.setenv("EDX_AGENT_LANG", "zh")
    classes = error_classes()
    assert len(classes) > 40
    for cls in classes:
        for template in (cls.message, cls.remedy):
            if template and template != "{detail}":
                assert i18n._(template) != template, f"{cls.__name__} ({cls.code}): {template!r} untranslated"


# --- the language choice ---------------------------------------------------------------------

@pytest.mark.parametrize(("env", "expected"), [
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "C.UTF-8"}, "en"),
    ({}, "en"),
    ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),       # LC_ALL wins over LANG
    ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, "en"),                  # ... also when it says C
    ({"LANGUAGE": "fr:zh_CN"}, "zh"),
    ({"EDX_AGENT_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),         # --lang / EDX_AGENT_LANG first
])
def test_language_from_the_environment(lang_env, env: dict[str, str], expected: str) -> None:
    for k, v in env.items():
        lang_env.setenv(k, v)
    assert i18n.current_language() == expected


def test_config_lang_sits_between_the_option_and_the_locale(lang_env, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[agent]\nlang = "zh"\n[database]\nurl = "sqlite:///x.db"\n')
    lang_env.setenv("LANG", "en_US.UTF-8")
    assert i18n.setup(None, cfg) == "zh"
    assert i18n.setup("en", cfg) == "en"  # --lang wins
    lang_env.delenv("EDX_AGENT_LANG")
    cfg.write_text('[agent]\nlang = "auto"\n')
    lang_env.setenv("LANG", "zh_CN.UTF-8")
    assert i18n.setup(None, cfg) == "zh"  # auto: the locale decides
    assert i18n.setup(None, tmp_path / "missing.toml") == "zh"


def test_an_error_is_translated_when_shown_not_when_raised(lang_env) -> None:
    err = errors.ConfigMissing("/etc/edx-agent/agent.toml")
    assert str(err) == "configuration file not found: /etc/edx-agent/agent.toml"
    lang_env.setenv("EDX_AGENT_LANG", "zh")
    assert str(err) == "找不到配置文件：/etc/edx-agent/agent.toml"
    doc = err.to_dict()
    assert doc["code"] == "config-missing" and CJK.search(doc["remedy"]) and CJK.search(doc["message"])
    assert err.args[0] == "configuration file not found: /etc/edx-agent/agent.toml"  # logs keep English
    # an instance remedy that is in the catalog is translated too; one that is not stays as given
    assert CJK.search(errors.KeyFileError("x", remedy="Run `edx-agent init` first.").remedy_text)
    assert errors.KeyFileError("x", remedy="Call 555-0100.").remedy_text == "Call 555-0100."


# --- through the real CLI ----------------------------------------------------------------------

def test_cli_in_chinese_from_the_locale_and_from_lang_option(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.toml")
    zh_locale = run_cli("--config", missing, "status", env_extra={"LANG": "zh_CN.UTF-8"})
    zh_option = run_cli("--lang", "zh", "--config", missing, "status", env_extra={"LANG": "C.UTF-8"})
    en = run_cli("--config", missing, "status", env_extra={"LANG": "C.UTF-8"})
    for res in (zh_locale, zh_option, en):
        assert res.returncode == 78, res.stderr
        assert "[config-missing]" in res.stderr  # the code is the same in every language
    for res in (zh_locale, zh_option):
        assert f"错误 [config-missing]: 找不到配置文件：{missing}" in res.stderr, res.stderr
        assert "处理办法:" in res.stderr
    assert f"error [config-missing]: configuration file not found: {missing}" in en.stderr
    assert "what to do: Create one with" in en.stderr
    # --lang after the subcommand too, and English wins over a Chinese locale when asked for
    after = run_cli("--config", missing, "status", "--lang", "en", env_extra={"LANG": "zh_CN.UTF-8"})
    assert "configuration file not found" in after.stderr


def test_json_keeps_the_code_and_translates_the_text(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.toml")
    docs = {lang: json.loads(run_cli("--lang", lang, "--json", "--config", missing, "status",
                                     env_extra={}).stdout)["error"] for lang in ("zh", "en")}
    assert docs["zh"]["code"] == docs["en"]["code"] == "config-missing"
    assert CJK.search(docs["zh"]["message"]) and not CJK.search(docs["en"]["message"])


def test_check_speaks_the_config_language(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\nlang = "zh"\nstate_dir = "{tmp_path}/state"\n[database]\nurl = "sqlite:///x.db"\n')
    res = run_cli("--config", str(cfg), "check", env_extra={"LANG": "C.UTF-8"})
    assert res.returncode == 78
    assert "配置存在问题" in res.stdout and "中没有密钥" in res.stdout, res.stdout


def test_config_problems_are_listed_in_chinese_with_the_same_paths(lang_env, tmp_path) -> None:
    from agent.config import load
    from agent.errors import ConfigError
    p = tmp_path / "agent.toml"
    p.write_text('[agent]\nstate_dri = "x"\n[hub]\nurl = "ftp://x"\n[sync]\ninterval = "soon"\n'
                 'quarantine_limit = 2\nlong_poll = "maybe"\n[keys]\nsuite = "rsa"\n', encoding="utf-8")
    lang_env.setenv("EDX_AGENT_LANG", "zh_CN")
    with pytest.raises(ConfigError) as e:
        load(p)
    joined = "\n".join(e.value.problems)
    assert "agent.state_dri：未知的配置项（是否想写 'state_dir'？）" in joined
    assert "database：缺少必填配置项" in joined
    assert "hub.url：应以 https:// 开头" in joined and "sync.interval：'soon' 不是时长" in joined
    assert "sync.quarantine_limit：不能大于 1" in joined and "sync.long_poll：应为 true 或 false" in joined
    assert "keys.suite：只能是 'intl' or 'gm' 之一" in joined
