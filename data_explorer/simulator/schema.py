"""The shape of every synthetic project space, declared once.

Cases, forms and application definitions are all derived from these
declarations, so the apps describe exactly the case types, properties and
questions the data carries.

Cases come in families of eight, by index: ``8f`` a household, ``8f+1``,
``8f+4``, ``8f+6`` patients (child index ``parent`` to the household), the
others visits (extension index ``host`` to a patient)::

    slot  0          1        2      3      4        5      6        7
          household  patient  visit  visit  patient  visit  patient  visit
                     ^parent  ^host(1)      ^parent  ^host(4)        ^host(6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from datetime import date

from data_explorer.simulator.pools import (
    COMMENTS, DISTRICT_OPTIONS, FACILITIES, FIRST_NAMES, LANGUAGES, NOTES, OUTCOMES, REASONS, RISK_LEVELS, SEXES,
    SURNAMES, URGENCIES, VILLAGES, VISIT_TYPES, WATER_SOURCES, YES_NO, Options, Value, concat, values_of,
)
from data_explorer.simulator.synth import DAY_US, date_us, fmt_date

FAMILY = 8
SLOT_TYPES = ("household", "patient", "visit", "visit", "patient", "visit", "patient", "visit")
PATIENT_SLOTS = (1, 4, 6)
VISIT_SLOTS = {1: (2, 3), 4: (5,), 6: (7,)}
HOST_SLOT = {2: 1, 3: 1, 5: 4, 7: 6}

CASE_XMLNS = "http://commcarehq.org/case/transaction/v2"
META_XMLNS = "http://openrosa.org/jr/xforms"

CASE_PROPERTIES: dict[str, tuple[str, ...]] = {
    "household": ("village", "district", "water_source", "household_size", "registration_date", "head_of_household"),
    "patient": ("dob", "sex", "phone_number", "preferred_language", "risk_level", "notes", "last_visit_date"),
    "visit": ("visit_date", "visit_type", "weight_kg", "temperature_c", "outcome", "comment", "referral_reason"),
}
CASE_TYPES = tuple(CASE_PROPERTIES)


def slot_type(index: int) -> str:
    return SLOT_TYPES[index % FAMILY]


def parent_index(index: int) -> int | None:
    """The case a patient (child index ``parent``) or a visit (extension index ``host``) points to."""
    slot = index % FAMILY
    if slot in PATIENT_SLOTS:
        return index - slot
    if slot in HOST_SLOT:
        return index - slot + HOST_SLOT[slot]
    return None


# --- values -----------------------------------------------------------------------------------

_DAY0 = date_us(date(2023, 1, 1))
_DOB0 = date_us(date(1940, 1, 1))


def _days(start: int, days: int) -> tuple[str, ...]:
    return tuple(fmt_date(start + k * DAY_US) for k in range(days))


_NAMES = tuple(concat(first, " ", last) for last in SURNAMES for first in FIRST_NAMES)

VALUE_TABLES: dict[str, tuple[Value, ...]] = {
    "household_name": tuple(concat(last, " household") for last in SURNAMES),
    "village": VILLAGES,
    "district": values_of(DISTRICT_OPTIONS),
    "water_source": values_of(WATER_SOURCES),
    "household_size": tuple(str(n) for n in range(1, 13)),
    "registration_date": _days(_DAY0, 730),
    "head_of_household": _NAMES,
    "member_name": _NAMES,
    "dob": _days(_DOB0, 30_000),
    "sex": values_of(SEXES),
    "preferred_language": values_of(LANGUAGES),
    "risk_level": values_of(RISK_LEVELS),
    "notes": NOTES,
    "last_visit_date": _days(_DAY0, 730),
    "visit_date": _days(_DAY0, 730),
    "visit_type": values_of(VISIT_TYPES),
    "weight_kg": tuple(f"{30 + k // 10}.{k % 10}" for k in range(700)),
    "temperature_c": tuple(f"{36 + k // 10}.{k % 10}" for k in range(50)),
    "outcome": values_of(OUTCOMES),
    "comment": COMMENTS,
    "referral_reason": values_of(REASONS),
    "referral_facility": FACILITIES,
    "urgency": values_of(URGENCIES),
    "consent": values_of(YES_NO),
}
"""Every value a question or case property can take, by name, except ``VALUE_FUNCTIONS``."""
VALUE_FUNCTIONS: dict[str, Callable[[int], str]] = {
    "phone_number": lambda h: f"+2547{h % 100_000_000:08d}",
}
"""Values with too many possibilities for a table: plain ASCII with nothing to escape."""


def value(name: str, h: int) -> Value:
    table = VALUE_TABLES.get(name)
    return table[h % len(table)] if table is not None else VALUE_FUNCTIONS[name](h)


# --- forms ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    name: str
    type: str  # CommCare question type: Text, Int, Date, Select, PhoneNumber, Decimal, DataBindOnly
    label: str
    label_fr: str
    options: Options = ()
    required: bool = False
    calculate: str | None = None  # hidden questions: the constant they hold

    @property
    def tag(self) -> str:
        return "hidden" if self.calculate is not None else ("select1" if self.options else "input")


@dataclass(frozen=True)
class Index:
    name: str
    role: str
    case_type: str
    relationship: str  # child or extension


@dataclass(frozen=True)
class CaseSlot:
    """Where a case block sits. Updates take the values of the same-named questions of its group."""

    role: str
    case_type: str
    name_from: str | None = None  # the question that holds the name of a case this block creates
    update: tuple[str, ...] = ()
    index: Index | None = None
    empty_index: bool = False  # an ``"index": ""`` element when there is no index to write
    close_one_in: int = 0  # closes the case in about one form of that many


@dataclass(frozen=True)
class Group:
    name: str
    label: str
    label_fr: str
    children: tuple["Node", ...]
    repeat: bool = False  # a repeat group binds its case slot to each case of the role in turn


Node = Union[Question, Group, CaseSlot]


@dataclass(frozen=True)
class FormKind:
    key: str
    xmlns: str
    name: str
    name_fr: str
    primary_type: str  # the case type of the top-level case block (and of the module)
    tree: tuple[Node, ...]


def _q(name: str, type_: str, label: str, label_fr: str, options: Options = (), required: bool = False) -> Question:
    return Question(name, type_, label, label_fr, options, required)


_FD = "http://openrosa.org/formdesigner/"
REGISTER_HOUSEHOLD = FormKind(
    "register_household", _FD + "5C8F6D9E-2A41-4E1B-9C07-1A2B3C4D5E01", "Register Household", "Enregistrer un ménage",
    "household",
    (
        _q("household_name", "Text", "Household name", "Nom du ménage", required=True),
        _q("village", "Text", "Village", "Village"),
        _q("district", "Select", "District", "District", DISTRICT_OPTIONS),
        _q("water_source", "Select", "Main water source", "Source d'eau principale", WATER_SOURCES),
        _q("household_size", "Int", "People in the household", "Personnes dans le ménage"),
        _q("registration_date", "Date", "Registration date", "Date d'enregistrement"),
        _q("head_of_household", "Text", "Head of household", "Chef de ménage"),
        CaseSlot("household", "household", "household_name",
                 ("village", "district", "water_source", "household_size", "registration_date", "head_of_household"),
                 empty_index=True),
        Group("members", "Household members", "Membres du ménage", (
            _q("member_name", "Text", "Name", "Nom", required=True),
            _q("dob", "Date", "Date of birth", "Date de naissance"),
            _q("sex", "Select", "Sex", "Sexe", SEXES),
            _q("phone_number", "PhoneNumber", "Phone number", "Numéro de téléphone"),
            _q("preferred_language", "Select", "Preferred language", "Langue préférée", LANGUAGES),
            CaseSlot("members", "patient", "member_name", ("dob", "sex", "phone_number", "preferred_language"),
                     Index("parent", "household", "household", "child")),
        ), repeat=True),
    ),
)
UPDATE_HOUSEHOLD = FormKind(
    "update_household", _FD + "5C8F6D9E-2A41-4E1B-9C07-1A2B3C4D5E02", "Update Household", "Mettre à jour le ménage",
    "household",
    (
        _q("water_source", "Select", "Main water source", "Source d'eau principale", WATER_SOURCES),
        _q("household_size", "Int", "People in the household", "Personnes dans le ménage"),
        CaseSlot("household", "household", None, ("water_source", "household_size"), empty_index=True, close_one_in=40),
        Group("member_updates", "Members seen today", "Membres vus aujourd'hui", (
            _q("risk_level", "Select", "Risk level", "Niveau de risque", RISK_LEVELS),
            _q("notes", "Text", "Notes 📝", "Remarques 📝"),
            CaseSlot("member_updates", "patient", None, ("risk_level", "notes")),
        ), repeat=True),
    ),
)
PATIENT_FOLLOWUP = FormKind(
    "patient_followup", _FD + "5C8F6D9E-2A41-4E1B-9C07-1A2B3C4D5E03", "Patient Follow-up", "Suivi du patient",
    "patient",
    (
        _q("risk_level", "Select", "Risk level", "Niveau de risque", RISK_LEVELS),
        _q("notes", "Text", "Notes 📝", "Remarques 📝"),
        _q("last_visit_date", "Date", "Date of this visit", "Date de cette visite"),
        CaseSlot("patient", "patient", None, ("risk_level", "notes", "last_visit_date"),
                 Index("parent", "household", "household", "child")),
        Group("visit_details", "Visit details", "Détails de la visite", (
            _q("visit_date", "Date", "Visit date", "Date de la visite"),
            _q("visit_type", "Select", "Type of visit", "Type de visite", VISIT_TYPES),
            _q("weight_kg", "Decimal", "Weight (kg)", "Poids (kg)"),
            _q("temperature_c", "Decimal", "Temperature (°C)", "Température (°C)"),
            CaseSlot("visit", "visit", None, ("visit_date", "visit_type", "weight_kg", "temperature_c"),
                     Index("host", "patient", "patient", "extension")),
        )),
    ),
)
REGISTER_PATIENT = FormKind(
    "register_patient", _FD + "5C8F6D9E-2A41-4E1B-9C07-1A2B3C4D5E04", "Register Patient", "Enregistrer un patient",
    "patient",
    (
        _q("patient_name", "Text", "Patient name", "Nom du patient", required=True),
        _q("dob", "Date", "Date of birth", "Date de naissance"),
        _q("sex", "Select", "Sex", "Sexe", SEXES),
        _q("phone_number", "PhoneNumber", "Phone number", "Numéro de téléphone"),
        _q("preferred_language", "Select", "Preferred language", "Langue préférée", LANGUAGES),
        CaseSlot("patient", "patient", "patient_name", ("dob", "sex", "phone_number", "preferred_language"),
                 Index("parent", "household", "household", "child")),
    ),
)
RECORD_VISIT = FormKind(
    "record_visit", _FD + "9A7B3C21-6D5E-4F10-8B2A-0C1D2E3F4A03", "Record Visit", "Enregistrer une visite", "visit",
    (
        _q("visit_date", "Date", "Visit date", "Date de la visite", required=True),
        _q("visit_type", "Select", "Type of visit", "Type de visite", VISIT_TYPES),
        _q("weight_kg", "Decimal", "Weight (kg)", "Poids (kg)"),
        _q("temperature_c", "Decimal", "Temperature (°C)", "Température (°C)"),
        _q("referral_reason", "Select", "Reason for referral", "Motif de la référence", REASONS),
        CaseSlot("visit", "visit", None, ("visit_date", "visit_type", "weight_kg", "temperature_c", "referral_reason"),
                 Index("host", "patient", "patient", "extension")),
    ),
)
VISIT_OUTCOME = FormKind(
    "visit_outcome", _FD + "9A7B3C21-6D5E-4F10-8B2A-0C1D2E3F4A01", "Visit Outcome", "Résultat de la visite",
    "visit",
    (
        _q("outcome", "Select", "Outcome", "Résultat", OUTCOMES, required=True),
        _q("comment", "Text", "Comment 💬", "Commentaire 💬"),
        CaseSlot("visit", "visit", None, ("outcome", "comment"),
                 Index("host", "patient", "patient", "extension"), close_one_in=2),
        Group("followup", "Patient follow-up", "Suivi du patient", (
            _q("risk_level", "Select", "Risk level", "Niveau de risque", RISK_LEVELS),
            _q("last_visit_date", "Date", "Date of this visit", "Date de cette visite"),
            CaseSlot("patient", "patient", None, ("risk_level", "last_visit_date")),
        )),
    ),
)
REFERRAL = FormKind(
    "referral", _FD + "9A7B3C21-6D5E-4F10-8B2A-0C1D2E3F4A02", "Referral", "Référence", "patient",
    (
        _q("urgency", "Select", "Urgency", "Urgence", URGENCIES),
        _q("referral_facility", "Text", "Facility", "Établissement"),
        _q("risk_level", "Select", "Risk level", "Niveau de risque", RISK_LEVELS),
        _q("consent", "Select", "Consent given", "Consentement donné", YES_NO),
        CaseSlot("patient", "patient", None, ("risk_level",)),
        Group("referral", "Referral details", "Détails de la référence", (
            _q("visit_date", "Date", "Referral date", "Date de référence"),
            _q("referral_reason", "Select", "Reason", "Motif", REASONS),
            Question("visit_type", "DataBindOnly", "Visit type", "Type de visite", calculate="referral"),
            CaseSlot("visit", "visit", None, ("visit_date", "referral_reason", "visit_type"),
                     Index("host", "patient", "patient", "extension")),
            Group("household_check", "Household check", "Vérification du ménage", (
                _q("water_source", "Select", "Main water source", "Source d'eau principale", WATER_SOURCES),
                CaseSlot("household", "household", None, ("water_source",), empty_index=True),
            )),
        )),
    ),
)
FORM_KINDS = (REGISTER_HOUSEHOLD, PATIENT_FOLLOWUP, VISIT_OUTCOME, UPDATE_HOUSEHOLD, REFERRAL, REGISTER_PATIENT,
              RECORD_VISIT)
"""Base form ``j`` is of kind ``FORM_KINDS[j % 7]``."""


# --- applications -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str
    name_fr: str
    case_type: str
    forms: tuple[FormKind, ...]


@dataclass(frozen=True)
class App:
    key: str
    name: str
    version: int
    modules: tuple[Module, ...]


APPS = (
    App("household_survey", "Household Survey", 12, (
        Module("Households", "Ménages", "household", (REGISTER_HOUSEHOLD, UPDATE_HOUSEHOLD)),
        Module("Patients", "Patients", "patient", (REGISTER_PATIENT, PATIENT_FOLLOWUP)),
    )),
    App("clinic_referrals", "Clinic Referrals — Références", 7, (
        Module("Visits", "Visites", "visit", (RECORD_VISIT, VISIT_OUTCOME)),
        Module("Referrals", "Références", "patient", (REFERRAL,)),
    )),
)
APP_OF_KIND = {kind.key: app_index for app_index, app in enumerate(APPS) for m in app.modules for kind in m.forms}


RENAMED_QUESTIONS = {
    "phone_number": "contact_phone",
    "notes": "remarks",
    "weight_kg": "weight",
    "household_size": "hh_members",
}
"""With a space's ``renamed_questions``: questions named apart from the case property they save, as in
many real apps, so only the form's XML says which question saves which property."""


def question_id(name: str, renamed: bool) -> str:
    return RENAMED_QUESTIONS.get(name, name) if renamed else name


def questions(tree: tuple[Node, ...], prefix: str = "/data", repeat: str | None = None, group: str | None = None,
              renamed: bool = False):
    """(path, question-or-group, repeat path, group path) for every question and group, in form order."""
    for node in tree:
        if isinstance(node, Question):
            yield f"{prefix}/{question_id(node.name, renamed)}", node, repeat, group
        elif isinstance(node, Group):
            path = f"{prefix}/{node.name}"
            yield path, node, repeat, group
            yield from questions(node.children, path, path if node.repeat else repeat, path, renamed)
