"""Pools of synthetic values, JSON-escaped once at import.

A ``Text`` is (raw, escaped for ASCII-only JSON, escaped for UTF-8 JSON): the
Case API v2 answers with ``\\uXXXX`` escapes (Django's default), the v0.5
resources with raw UTF-8, and both are produced by picking a column instead of
calling ``json.dumps`` per value. Plain ``str`` values are ASCII with nothing to
escape (dates, numbers, option values).
"""

from __future__ import annotations

import json
from typing import Union

RAW, ASCII, UTF8 = 0, 1, 2

Text = tuple[str, str, str]
Value = Union[str, Text]


def text(raw: str) -> Text:
    return (raw, json.dumps(raw)[1:-1], json.dumps(raw, ensure_ascii=False)[1:-1])


def concat(*parts: Value) -> Text:
    """Texts and plain strings joined; escaping commutes with concatenation."""
    return (
        "".join(p if type(p) is str else p[RAW] for p in parts),
        "".join(p if type(p) is str else p[ASCII] for p in parts),
        "".join(p if type(p) is str else p[UTF8] for p in parts),
    )


def raw(value: Value) -> str:
    return value if type(value) is str else value[RAW]


def esc(value: Value, mode: int) -> str:
    return value if type(value) is str else value[mode]


def _texts(*values: str) -> tuple[Text, ...]:
    return tuple(text(v) for v in values)


FIRST_NAMES = _texts(
    "Amina", "José", "Zoë", "Ngozi", "Hélène", "Chidi", "Aïcha", "Björn", "Fatuma", "Kwame", "Søren", "Mei",
    "王芳", "李伟", "Thảo", "Ömer", "Łucja", "Ana-María", "Thandiwe", "Ravi", "Priyanka", "Élodie", "Mamadou",
    "Oluwaseun", "Jürgen", "Zainab", "Siobhán", "Akua", "Tomás", "Inês", "Μαρία", "Олена",
)
SURNAMES = _texts(
    "Mwangi", "Okafor", "García", "Müller", "Nakamura", "Diallo", "Ndlovu", "Kowalski", "Hernández", "Traoré",
    "Ōtsuka", "Nguyễn", "陈", "O'Brien", 'Dlamini "Zee"', "Achterberg", "Nør", "Çelik", "Mensah", "Okonkwo",
    "Şahin", "Banda", "Kamau", "Ferreira",
)
VILLAGES = _texts(
    "Kibera", "São Tomé", "Ñuñoa", "Kōbe-Nord", "Mbalmayo", "Zürich-Oerlikon", "Ouagadougou", "Cần Thơ",
    "Dar es Salaam", "北京 海淀", "Île-à-la-Crosse", "Kraków", "Tiruchirappalli", "Lalitpur", "Axum", "Aldeia 🌴",
)
DISTRICTS = ("north", "south", "east", "west", "central")
NOTES = _texts(
    "Feeling better 😊", "Needs follow-up 🚑", "Rien à signaler", "Très fatigué·e", "咳嗽三天",
    "Lives far from the clinic 🏠➡️🏥", "Allergic to penicillin ⚠️", "", "Mother present 👩‍👧",
    "Line one\nLine two", "Takes medicine with food\tdaily", "Back\\slash in a note", "Habla español: señal débil 📞",
)
COMMENTS = _texts(
    "Patient stable", "Fièvre persistante 🌡️", "Referred to district hospital", "已转诊", "All good 👍",
    "Missed appointment", "Señal débil; llamó por teléfono 📞", 'Said "much better"', "Ça va mieux",
)
FACILITIES = _texts("District Hospital", "Centre de santé Notre-Dame", "Clínica San José", "中心医院", "Mobile clinic 🚐")


# Select options: (value, English label, French label)
Options = tuple[tuple[str, str, str], ...]
WATER_SOURCES: Options = (
    ("piped", "Piped water", "Eau courante"),
    ("borehole", "Borehole", "Forage"),
    ("well", "Protected well", "Puits protégé"),
    ("river", "River or lake", "Rivière ou lac"),
    ("rain", "Rainwater", "Eau de pluie"),
)
DISTRICT_OPTIONS: Options = tuple((d, d.title(), {"north": "Nord", "south": "Sud", "east": "Est", "west": "Ouest",
                                                   "central": "Centre"}[d]) for d in DISTRICTS)
SEXES: Options = (("female", "Female", "Féminin"), ("male", "Male", "Masculin"))
RISK_LEVELS: Options = (("low", "Low", "Faible"), ("medium", "Medium", "Moyen"), ("high", "High", "Élevé"))
LANGUAGES: Options = (("en", "English", "Anglais"), ("fr", "French", "Français"), ("sw", "Swahili", "Swahili"),
                      ("zh", "Chinese", "Chinois"))
VISIT_TYPES: Options = (("routine", "Routine", "Routine"), ("followup", "Follow-up", "Suivi"),
                        ("referral", "Referral", "Référence"), ("emergency", "Emergency", "Urgence"))
OUTCOMES: Options = (("recovered", "Recovered", "Guéri"), ("improving", "Improving", "En amélioration"),
                     ("referred", "Referred", "Référé"), ("unchanged", "Unchanged", "Inchangé"))
REASONS: Options = (("fever", "Fever", "Fièvre"), ("malnutrition", "Malnutrition", "Malnutrition"),
                    ("pregnancy", "Pregnancy", "Grossesse"), ("injury", "Injury", "Blessure"), ("other", "Other", "Autre"))
URGENCIES: Options = (("routine", "Routine", "Routine"), ("urgent", "Urgent", "Urgent"), ("now", "Immediately", "Immédiatement"))
YES_NO: Options = (("yes", "Yes", "Oui"), ("no", "No", "Non"))


def values_of(options: Options) -> tuple[str, ...]:
    return tuple(value for value, _, _ in options)
