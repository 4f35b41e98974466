"""The admin speaks Brazilian Portuguese by default and English on request (Django i18n).

Source strings are English, wrapped in gettext_lazy; locale/pt_BR/LC_MESSAGES/django.po holds their translations and
django.mo is committed next to it (a fresh machine may not have gettext). These tests keep the catalogue complete,
the .mo in step with the .po, and the language switch working. When they fail after new strings were added, refresh:

    export DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/cecilia  # settings want a URL; nothing connects
    .venv/bin/python manage.py makemessages -l pt_BR --ignore=.venv --ignore=.data --ignore=bench --ignore=tests \
        --no-obsolete
    (translate the new empty / "#, fuzzy" entries of locale/pt_BR/LC_MESSAGES/django.po; drop the fuzzy flags)
    .venv/bin/python manage.py compilemessages -l pt_BR --ignore=.venv --ignore=.data --ignore=bench
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import reverse
from django.utils import translation
from django.utils.translation import template as django_template

ROOT = Path(__file__).resolve().parents[2]
LOCALE_DIR = ROOT / "locale" / "pt_BR" / "LC_MESSAGES"
PO_PATH = LOCALE_DIR / "django.po"
MO_PATH = LOCALE_DIR / "django.mo"

# What `makemessages --ignore=...` leaves out (plus hidden folders and caches, which Django skips by default).
IGNORED_DIRS = {".venv", ".data", "bench", "tests", "node_modules", "__pycache__", "locale"}
# Django's makemessages: .py files are read as Python, .html/.txt as templates.
PYTHON_EXTENSIONS = {".py"}
TEMPLATE_EXTENSIONS = {".html", ".txt"}
# The keywords Django's makemessages passes to xgettext for the "django" domain.
XGETTEXT_KEYWORDS = [
    "--keyword=gettext_noop",
    "--keyword=gettext_lazy",
    "--keyword=ngettext_lazy:1,2",
    "--keyword=pgettext:1c,2",
    "--keyword=npgettext:1c,2,3",
    "--keyword=pgettext_lazy:1c,2",
    "--keyword=npgettext_lazy:1c,2,3",
]

# Strings whose Portuguese is legitimately the English text: acronyms, product names, spelling shared by both.
SAME_IN_PORTUGUESE = {
    "CPF",
    "e-mail",
    "WhatsApp",
    "API",
    "Evolution API",
    "Meta WhatsApp Cloud API",
    "—",
}
# Choices that are data, not words of the interface.
UNTRANSLATED_CHOICES = {
    "cecilia.Clinic.timezone",  # IANA zone ids (America/Sao_Paulo), from django-timezone-field
    "cecilia.Clinic.state",  # Brazilian state names: Portuguese proper nouns in the source already
}


# --- A small .po reader (no polib) ----------------------------------------------------------------------------------


@dataclass
class PoEntry:
    msgid: str | None = None
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> tuple[str | None, str | None]:
        return self.msgctxt, self.msgid

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values())


def _unquote(literal: str) -> str:
    """A PO string literal (`"a \\"b\\"\\n"`) to its text; PO escapes are a subset of Python's."""
    return ast.literal_eval(literal.strip())


def parse_po(source: str) -> list[PoEntry]:
    """The entries of a .po/.pot text, header included (msgid "")."""
    entries: list[PoEntry] = []
    entry: PoEntry | None = None
    flags: set[str] = set()
    target: tuple[str, int] | None = None  # the string a continuation line extends: (keyword, plural index)
    for lineno, raw in enumerate(source.splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            target = None
            continue
        if line.startswith("#"):
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith('"'):
            assert entry is not None and target is not None, f"line {lineno}: a string continues nothing"
            keyword, index = target
            if keyword == "msgstr":
                entry.msgstr[index] += _unquote(line)
            else:
                setattr(entry, keyword, getattr(entry, keyword) + _unquote(line))
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(".*")$', line)
        assert match, f"line {lineno}: cannot read {raw!r}"
        keyword, index, text = match.group(1), int(match.group(2) or 0), _unquote(match.group(3))
        context_only = entry is not None and entry.msgctxt is not None and entry.msgid is None
        if keyword == "msgctxt" or (keyword == "msgid" and not context_only):
            entry = PoEntry(flags=flags, obsolete=obsolete)
            entries.append(entry)
            flags = set()
        assert entry is not None, f"line {lineno}: {keyword} before msgid"
        if keyword == "msgstr":
            entry.msgstr[index] = text
        else:
            setattr(entry, keyword, text)
        target = (keyword, index)
    return entries


def mo_catalog_from_po(entries: list[PoEntry]) -> dict[Any, str]:
    """What `msgfmt` would compile, keyed the way gettext.GNUTranslations keys its catalogue."""
    catalog: dict[Any, str] = {}
    for entry in entries:
        if entry.obsolete or "fuzzy" in entry.flags or not entry.translated or entry.msgid is None:
            continue
        msgid = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if entry.msgid_plural is None:
            catalog[msgid] = entry.msgstr[0]
        else:
            for index, text in entry.msgstr.items():
                catalog[(msgid, index)] = text
    return catalog


def _po_entries() -> list[PoEntry]:
    return parse_po(PO_PATH.read_text(encoding="utf-8"))


def _messages(entries: list[PoEntry]) -> list[PoEntry]:
    return [e for e in entries if e.msgid and not e.obsolete]


def _header(entries: list[PoEntry]) -> dict[str, str]:
    header = next(e for e in entries if e.msgid == "" and e.msgctxt is None)
    pairs = (line.split(":", 1) for line in header.msgstr[0].splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


# --- (a) The catalogue is complete ---------------------------------------------------------------------------------


def test_the_catalogue_is_brazilian_portuguese_with_its_plural_rule():
    entries = _po_entries()
    header = _header(entries)
    assert header["Language"] == "pt_BR"
    assert header["Plural-Forms"] == "nplurals=2; plural=(n > 1);"
    assert "charset=UTF-8" in header["Content-Type"]
    assert len(_messages(entries)) > 100  # sanity: the reader found the catalogue


def test_every_message_is_translated_and_none_is_fuzzy():
    entries = _po_entries()
    fuzzy = [e.msgid for e in entries if "fuzzy" in e.flags and not e.obsolete]  # the header included
    untranslated = [e.msgid for e in _messages(entries) if not e.translated]
    assert not fuzzy, f"fuzzy entries in {PO_PATH.name}: {fuzzy}"
    assert not untranslated, f"untranslated entries in {PO_PATH.name}: {untranslated}"
    plural_entries = [e for e in _messages(entries) if e.msgid_plural is not None]
    for entry in plural_entries:
        assert sorted(entry.msgstr) == [0, 1], f"{entry.msgid!r} needs msgstr[0] and msgstr[1]"


_PERCENT_PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")
_BRACE_PLACEHOLDER = re.compile(r"\{\w*\}")


def _placeholders(text: str, flags: set[str]) -> set[str]:
    found = set()
    if "python-format" in flags:
        found |= {p for p in _PERCENT_PLACEHOLDER.findall(text) if p != "%%"}
    if "python-brace-format" in flags:
        found |= set(_BRACE_PLACEHOLDER.findall(text))
    return found


def test_translations_keep_the_placeholders_of_their_source():
    for entry in _messages(_po_entries()):
        singular = _placeholders(entry.msgid or "", entry.flags)
        if entry.msgid_plural is None:
            assert _placeholders(entry.msgstr[0], entry.flags) == singular, f"{entry.msgid!r}: placeholders changed"
            continue
        plural = _placeholders(entry.msgid_plural, entry.flags)
        for index, text in entry.msgstr.items():
            found = _placeholders(text, entry.flags)
            # A singular form may leave the count out ("one item"); no form may invent or drop a named value.
            assert found <= singular | plural, f"{entry.msgid!r}: msgstr[{index}] {text!r} has unknown placeholders"
        assert _placeholders(entry.msgstr[max(entry.msgstr)], entry.flags) == plural, f"{entry.msgid_plural!r}"


def _source_files() -> list[Path]:
    """The files makemessages reads with the project's ignore options."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in PYTHON_EXTENSIONS | TEMPLATE_EXTENSIONS and not name.startswith("."):
                found.append(path)
    return found


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="xgettext (GNU gettext) is not installed")
def test_the_catalogue_holds_every_string_the_code_marks_for_translation(tmp_path):
    """What `makemessages` would extract now is all in the .po (re-run it when this fails)."""
    inputs = []
    for path in _source_files():
        if path.suffix in TEMPLATE_EXTENSIONS:
            copy = tmp_path / (str(path.relative_to(ROOT)).replace(os.sep, "__") + ".py")
            copy.write_text(django_template.templatize(path.read_text(encoding="utf-8"), origin=str(path)))
            inputs.append(str(copy))
        else:
            inputs.append(str(path))
    result = subprocess.run(
        ["xgettext", "--language=Python", "--from-code=UTF-8", *XGETTEXT_KEYWORDS, "--output=-", *inputs],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    extracted = {e.key for e in _messages(parse_po(result.stdout))}
    translated = {e.key for e in _messages(_po_entries()) if e.translated and "fuzzy" not in e.flags}
    missing = sorted(extracted - translated, key=lambda k: (k[0] or "", k[1]))
    assert not missing, f"strings marked for translation but missing from {PO_PATH.name}: {missing}"


def _our_app_configs() -> list[Any]:
    """Cecilia's own apps: packages at the project root (not Django's or a dependency's)."""
    return [config for config in apps.get_app_configs() if Path(config.path).parent == ROOT]


def _interface_strings() -> list[tuple[str, Any]]:
    """(where, text) for every model, field, choice, constraint and admin string staff can read."""
    found: list[tuple[str, Any]] = []
    our_models = set()
    for config in _our_app_configs():
        found.append((f"{config.label} app verbose_name", config.verbose_name))
        for model in config.get_models():
            our_models.add(model)
            where = f"{config.label}.{model.__name__}"
            found.append((f"{where} verbose_name", model._meta.verbose_name))
            found.append((f"{where} verbose_name_plural", model._meta.verbose_name_plural))
            for model_field in model._meta.get_fields():
                if model_field.auto_created:  # reverse relations and the automatic id
                    continue
                at = f"{where}.{model_field.name}"
                found.append((f"{at} verbose_name", model_field.verbose_name))
                if model_field.help_text:
                    found.append((f"{at} help_text", model_field.help_text))
                if at not in UNTRANSLATED_CHOICES:
                    found.extend((f"{at} choice {value!r}", label) for value, label in model_field.flatchoices or ())
                for validator in model_field.validators:
                    if "message" in vars(validator):  # a message of ours, not the validator's (Django's) default
                        found.append((f"{at} validator {type(validator).__name__}", validator.message))
            for constraint in model._meta.constraints:
                if constraint.violation_error_message != constraint.default_violation_error_message:
                    found.append((f"{where} constraint {constraint.name}", constraint.violation_error_message))

    found.append(("admin.site.index_title", admin.site.index_title))
    superuser = get_user_model()(username="i18n", is_staff=True, is_superuser=True)
    request = RequestFactory().get("/")
    request.user = superuser
    for model, model_admin in admin.site._registry.items():
        if model not in our_models:
            continue
        where = f"{type(model_admin).__name__}"
        for title, _options in model_admin.fieldsets or ():
            if title is not None:
                found.append((f"{where} fieldset", title))
        for name in model_admin.list_display:
            attribute = getattr(model_admin, name, None) if isinstance(name, str) else name
            description = getattr(attribute, "short_description", None)
            if description is not None:
                found.append((f"{where}.{getattr(attribute, '__name__', name)} description", description))
        inlines = {*model_admin.inlines, *model_admin.get_inlines(request, None)}
        for inline in sorted(inlines, key=lambda cls: cls.__qualname__):
            for attribute in ("verbose_name", "verbose_name_plural"):
                value = inline.__dict__.get(attribute)
                if value is not None:
                    found.append((f"{inline.__qualname__}.{attribute}", value))
    return found


def test_every_interface_string_reads_in_portuguese_by_default():
    """An English word left on screen means a string not wrapped in _() or a catalogue not refreshed."""
    strings = _interface_strings()
    assert len(strings) > 100  # sanity: the walk found the models and admins
    english_on_screen = []
    for where, text in strings:
        with translation.override("en"):
            english = str(text)
        with translation.override("pt-br"):
            portuguese = str(text)
        if portuguese == english and english not in SAME_IN_PORTUGUESE:
            english_on_screen.append(f"{where}: {english!r}")
    assert not english_on_screen, "untranslated in pt-BR:\n" + "\n".join(sorted(set(english_on_screen)))


def test_words_of_the_back_office_read_as_a_brazilian_receptionist_expects():
    from patients.models import Patient
    from scheduling.models import Appointment, AppointmentStatus, TimeOff

    with translation.override("pt-br"):
        assert str(Appointment._meta.verbose_name) == "agendamento"
        assert str(Patient._meta.get_field("health_plan").verbose_name) == "convênio"
        assert str(TimeOff._meta.verbose_name) == "ausência"
        assert str(AppointmentStatus.NO_SHOW.label) == "Faltou"
        assert str(Patient(pk=7).display_name) == "Paciente nº 7"
    with translation.override("en"):
        assert str(Patient(pk=7).display_name) == "Patient #7"


# --- (b) The committed .mo is the compiled .po ----------------------------------------------------------------------


def test_the_compiled_catalogue_matches_the_po():
    """django.mo must be recompiled (compilemessages) whenever django.po changes."""
    with MO_PATH.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    expected = mo_catalog_from_po(_po_entries())
    actual = dict(compiled._catalog)
    # msgfmt leaves POT-Creation-Date out of the compiled header (reproducible builds); compare the rest.
    expected[""] = re.sub(r"^POT-Creation-Date:.*\n", "", expected[""], flags=re.MULTILINE)
    stale = sorted(str(k) for k in expected if actual.get(k) != expected[k])
    extra = sorted(str(k) for k in actual if k not in expected)
    assert not stale, f"{MO_PATH.name} is out of date for: {stale}"
    assert not extra, f"{MO_PATH.name} holds messages the .po no longer has: {extra}"
    # The plural rule compiled in is Brazilian: 0 and 1 are singular.
    assert [compiled.plural(n) for n in (0, 1, 2, 10)] == [0, 0, 1, 1]


# --- (c) The language switch --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_login_page_is_in_portuguese_by_default(client):
    response = client.get(reverse("admin:login"))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<html lang="pt-br"' in page
    assert ">Usuário:</label>" in page
    assert ">Senha:</label>" in page
    assert 'value="Acessar"' in page
    assert "Username" not in page


@pytest.mark.django_db
def test_the_admin_login_page_is_in_english_when_the_browser_asks(client):
    response = client.get(reverse("admin:login"), headers={"accept-language": "en"})
    assert response.status_code == 200
    page = response.content.decode()
    assert '<html lang="en"' in page
    assert ">Username:</label>" in page
    assert ">Password:</label>" in page
    assert 'value="Log in"' in page
    assert "Usuário" not in page


@pytest.mark.django_db
def test_the_admin_index_shows_our_own_names_in_the_chosen_language(admin_client):
    portuguese = admin_client.get(reverse("admin:index")).content.decode()
    english = admin_client.get(reverse("admin:index"), headers={"accept-language": "en"}).content.decode()
    for word in ("Painel administrativo", "Pacientes", "Agendamentos", "Convênios", "Conversas"):
        assert word in portuguese
    for word in ("Back-office", "Patients", "Appointments", "Health plans", "Conversations"):
        assert word in english
