"""Which question saves which case property, read from XForms shaped as CommCare's app builder renders
them (``corehq/apps/app_manager/xform.py``): binds on ``<block>/case/update/<property>``."""

import pytest

from data_explorer.loaders.commcare.applications import build_metadata
from data_explorer.loaders.commcare.xforms import CaseUpdate, XFormError, case_updates

XFORM = """<?xml version="1.0" encoding="UTF-8"?>
<h:html xmlns:h="http://www.w3.org/1999/xhtml" xmlns="http://www.w3.org/2002/xforms"
        xmlns:jr="http://openrosa.org/javarosa" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <h:head>
    <h:title>Register</h:title>
    <model>
      <instance>
        <data xmlns="http://openrosa.org/formdesigner/REG" uiVersion="1" version="12" name="Register">
          <mother_dob/><contact/><weight_now/><total/>
          <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="" date_modified="" user_id="">
            <update><dob/><phone_number/><weight/><score/><status/></update>
          </case>
          <babies>
            <baby_dob/>
            <subcase_0>
              <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="" date_modified="" user_id="">
                <create><case_name/><owner_id/><case_type>baby</case_type></create>
                <update><dob/></update>
              </case>
            </subcase_0>
          </babies>
          <followup>
            <case xmlns="http://commcarehq.org/case/transaction/v2" case_id="" date_modified="" user_id="">
              <update><risk/></update>
            </case>
            <risk_now/>
          </followup>
        </data>
      </instance>
      <instance id="commcaresession" src="jr://instance/session"/>
      <bind nodeset="/data/case/update/dob" calculate="/data/mother_dob" relevant="count(/data/mother_dob) &gt; 0"/>
      <bind nodeset="/data/case/update/phone_number" calculate="#form/contact"/>
      <bind nodeset="/data/case/update/weight" calculate=" /data/weight_now "/>
      <bind nodeset="/data/case/update/score" calculate="/data/total * 2"/>
      <bind nodeset="/data/case/update/status" calculate="'active'"/>
      <bind nodeset="/data/babies/subcase_0/case/update/dob" calculate="../../../../baby_dob"/>
      <bind nodeset="/data/followup/case/update/risk" calculate="../../../risk_now"/>
      <bind nodeset="/data/mother_dob" type="xsd:date"/>
    </model>
  </h:head>
  <h:body><input ref="/data/mother_dob"><label>Mother's date of birth</label></input></h:body>
</h:html>
"""


def test_each_saved_property_is_read_with_its_case_type_and_question():
    assert case_updates(XFORM.encode(), "mother") == [
        CaseUpdate(None, "risk", "/data/followup/risk_now"),  # an update-only block off the root: the XForm does not say
        CaseUpdate("baby", "dob", "/data/babies/baby_dob"),  # relative, in a repeat; the type from create/case_type
        CaseUpdate("mother", "dob", "/data/mother_dob"),  # the root block is the module's case
        CaseUpdate("mother", "phone_number", "/data/contact"),  # a form reference
        CaseUpdate("mother", "weight", "/data/weight_now"),
    ]  # ``score`` (an expression) and ``status`` (a constant) save no question's answer


@pytest.mark.parametrize("text, says", [
    ('<?xml version="1.0"?><!DOCTYPE h [<!ENTITY a "aaaa">]><h>&a;</h>', "document type"),
    ("<h:html xmlns:h='x'><unclosed></h:html>", "not well-formed"),
    ("<html><head><model><bind nodeset='/data/case/update/x' calculate='/data/y'/></model></head></html>",
     "no primary instance"),
    ("<!DOCTYPE html><html><body><h1>Sorry, something went wrong (500)</h1></body></html>", "document type"),
])
def test_what_is_not_an_xform_is_refused_with_the_reason(text, says):
    with pytest.raises(XFormError, match=says):
        case_updates(text.encode(), "mother")


def test_a_calculate_that_leaves_the_form_is_not_a_question():
    escaped = XFORM.replace('calculate="../../../risk_now"', 'calculate="../../../../../../etc/passwd"')
    assert CaseUpdate(None, "risk", "/data/followup/risk_now") not in case_updates(escaped, "mother")
    assert all(u.question.startswith("/data/") for u in case_updates(escaped, "mother"))


APP = {
    "id": "app1", "name": "Maternal", "version": 4,
    "modules": [
        {"name": "Mothers", "case_type": "mother", "case_properties": ["dob", "phone_number", "weight", "risk"],
         "forms": [
             {"xmlns": "http://x/reg", "name": "Register", "questions": [
                 {"label": "Mother's date of birth", "value": "/data/mother_dob", "type": "Date"},
                 {"label": "Phone to call", "value": "/data/contact", "type": "PhoneNumber"},
                 {"label": "Weight today", "value": "/data/weight_now", "type": "Decimal"},
                 {"label": "Baby's date of birth", "value": "/data/babies/baby_dob", "type": "Date"},
                 {"label": "Risk now", "value": "/data/followup/risk_now", "type": "Select"},
                 # named as a property, but it saves none: a guess by name would take its label
                 {"label": "Weight at birth", "value": "/data/babies/weight", "type": "Decimal"},
             ]},
         ]},
        {"name": "Babies", "case_type": "baby", "case_properties": ["dob", "weight"],
         "forms": [{"xmlns": "http://x/baby", "name": "Baby visit", "questions": [
             {"label": "Weight (kg)", "value": "/data/weight", "type": "Decimal"},
         ]}]},
    ],
}


def test_properties_are_labelled_by_the_question_that_saves_them():
    updates = {("app1", "http://x/reg"): [
        {"case_type": u.case_type, "property": u.property, "question": u.question}
        for u in case_updates(XFORM.encode(), "mother")
    ]}
    meta = build_metadata("demo", [APP], updates)
    mother, baby = meta["case_types"]["mother"]["properties"], meta["case_types"]["baby"]["properties"]
    assert mother["phone_number"] == {"label": "Phone to call", "question": "/data/contact", "type": "PhoneNumber"}
    assert mother["dob"]["label"] == "Mother's date of birth" and mother["weight"]["label"] == "Weight today"
    assert mother["risk"]["label"] == "Risk now"  # the block's type unsaid: the one case type with a ``risk``
    assert baby["dob"]["label"] == "Baby's date of birth"  # saved by a form of another module
    # the baby visit's XML is unknown: its question named as the property labels it, a guess
    assert baby["weight"] == {"label": "Weight (kg)", "question": "/data/weight", "type": "Decimal"}
    reg = next(f for f in meta["forms"] if f["xmlns"] == "http://x/reg")
    assert reg["app_version"] == 4 and len(reg["case_updates"]) == 5
    assert next(f for f in meta["forms"] if f["xmlns"] == "http://x/baby")["case_updates"] is None


def test_without_the_forms_xml_labels_fall_back_to_questions_named_as_the_property():
    meta = build_metadata("demo", [APP])
    mother = meta["case_types"]["mother"]["properties"]
    assert mother["phone_number"]["label"] is None  # no question is named so
    assert mother["weight"]["label"] == "Weight at birth"  # and the guess by name is wrong here
