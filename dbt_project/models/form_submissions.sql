{#- A form definition is an xmlns in an app: a copied app keeps its forms' xmlns, so both are the key.
    Archived forms are not counted as submissions: CommCare undid them (they stay in forms, with archived). -#}
with submitted as (
    select
        app_id,
        xmlns,
        max(form_name) as seen_name,
        count(*) as submissions,
        count(distinct user_id) as submitters,
        min(received_on) as first_received_on,
        max(received_on) as last_received_on
    from {{ ref('forms') }}
    where xmlns is not null and not archived
    group by app_id, xmlns
)
select
    coalesce(d.xmlns, s.xmlns) as xmlns,
    coalesce(d.form_name, s.seen_name) as form_name,
    coalesce(d.app_id, s.app_id) as app_id,
    d.app_name,
    d.module_name,
    d.case_type,
    coalesce(jsonb_array_length(d.questions), 0) as question_count,
    coalesce(d.questions, '[]'::jsonb) as questions,
    d.case_updates,
    coalesce(s.submissions, 0) as submissions,
    coalesce(s.submitters, 0) as submitters,
    s.first_received_on,
    s.last_received_on
from {{ source('raw', 'form_definitions') }} as d
full outer join submitted as s on s.app_id = d.app_id and s.xmlns = d.xmlns
