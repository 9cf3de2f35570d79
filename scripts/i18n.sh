#!/usr/bin/env bash
# Chinese/English messages: extract the msgids, update the zh_CN catalog, compile it, check it.
#
#   scripts/i18n.sh extract   write build/i18n/edx_agent.pot from the code
#   scripts/i18n.sh update    extract, then merge into agent/locale/zh_CN/LC_MESSAGES/edx_agent.po
#                             (new messages arrive with an empty msgstr: translate them)
#   scripts/i18n.sh compile   compile the .po files into the .mo files the agent reads
#   scripts/i18n.sh check     fail if a message is untranslated or fuzzy, or a .mo is out of date
#   scripts/i18n.sh all       update, compile, check
#
# Messages come from two places: strings wrapped in _() or N_() anywhere in agent/, connectors/
# and hub/ (Babel's extractor), and the `message` and `remedy` templates of every error class
# (classes with a `code = "..."`), which are translated when the error is shown, not where it is
# defined. The second list is read from the source with Python's ast, without importing anything.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DOMAIN=edx_agent
LOCALES=agent/locale
LANGS="zh_CN"
POT=build/i18n/$DOMAIN.pot
SOURCES=(agent connectors hub)

babel() { "$PY" -m babel.messages.frontend "$@"; }

extract() {
    mkdir -p "$(dirname "$POT")"
    babel --quiet extract -k _ -k N_ -k ngettext:1,2 --add-location=file --sort-output \
        --project edx-agent --version "$("$PY" -c "import agent; print(agent.__version__)")" \
        --copyright-holder "edx-agent authors" -c TRANSLATORS: \
        -o "$POT" "${SOURCES[@]}"
    "$PY" - "$POT" "${SOURCES[@]}" <<'PY'
"""Add the message/remedy templates of every error class (classes with a `code`) to the template."""
import ast
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

pot_path, roots = sys.argv[1], sys.argv[2:]
with open(pot_path, "rb") as f:
    catalog = read_po(f)


def text_of(node, consts):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    return None


for root in roots:
    for path in sorted(Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        consts = {}
        for node in tree.body:  # module-level string constants shared by several classes
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = text_of(node.value, {})
                if value is not None:
                    consts[node.targets[0].id] = value
        for cls in ast.walk(tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            fields = {}
            for stmt in cls.body:
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
                    if isinstance(target, ast.Name) and stmt.value is not None:
                        value = text_of(stmt.value, consts)
                        if value is not None:
                            fields[target.id] = (value, stmt.lineno)
            if "code" not in fields:
                continue
            code = fields["code"][0]
            for key in ("message", "remedy"):
                if key in fields and fields[key][0]:
                    text, _line = fields[key]
                    msg = catalog.get(text)
                    where = (path.as_posix(), None)
                    comment = f"error {code} ({cls.name}.{key})"
                    if msg is None:
                        catalog.add(text, locations=[where], auto_comments=[comment])
                    else:
                        if where not in msg.locations:
                            msg.locations.append(where)
                        if comment not in msg.auto_comments:
                            msg.auto_comments.append(comment)

with open(pot_path, "wb") as f:
    write_po(f, catalog, sort_output=True, include_lineno=False, width=100)
PY
    echo "i18n: wrote $POT ($(grep -c '^msgid ' "$POT") messages)"
}

update() {
    extract
    for lang in $LANGS; do
        po=$LOCALES/$lang/LC_MESSAGES/$DOMAIN.po
        if [ -f "$po" ]; then
            babel --quiet update -i "$POT" -d "$LOCALES" -D "$DOMAIN" -l "$lang" --ignore-obsolete \
                --no-fuzzy-matching -w 100
        else
            babel --quiet init -i "$POT" -d "$LOCALES" -D "$DOMAIN" -l "$lang" -w 100
        fi
        # the .po is reviewed in diffs: keep line numbers out of it
        sed -i -E 's/^(#: .*):[0-9]+/\1/; s/:[0-9]+( |$)/\1/g' "$po"
        echo "i18n: updated $po"
    done
}

compile() {
    babel compile -d "$LOCALES" -D "$DOMAIN" --statistics
}

check() {
    "$PY" - "$LOCALES" "$DOMAIN" <<'PY'
"""Every message translated, nothing fuzzy, and each .mo compiled from its current .po."""
import sys
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

locales, domain = Path(sys.argv[1]), sys.argv[2]
bad = []
for po_path in sorted(locales.glob(f"*/LC_MESSAGES/{domain}.po")):
    with open(po_path, "rb") as f:
        catalog = read_po(f)
    for m in catalog:
        if not m.id:
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if not all(strings):
            bad.append(f"{po_path}: untranslated: {m.id!r}")
        elif m.fuzzy:
            bad.append(f"{po_path}: fuzzy (check the translation, then remove the fuzzy flag): {m.id!r}")
    mo_path = po_path.with_suffix(".mo")
    expected = BytesIO()
    write_mo(expected, catalog)
    with open(mo_path, "rb") if mo_path.exists() else BytesIO() as f:
        current = {m.id: m.string for m in read_mo(f)} if mo_path.exists() else None
    if current != {m.id: m.string for m in read_mo(BytesIO(expected.getvalue()))}:
        bad.append(f"{mo_path}: out of date: run scripts/i18n.sh compile")
for line in bad:
    print("i18n:", line, file=sys.stderr)
if bad:
    sys.exit(1)
print("i18n: catalogs complete and compiled")
PY
}

case "${1:-}" in
    extract) extract ;;
    update) update ;;
    compile) compile ;;
    check) check ;;
    all) update; compile; check ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
