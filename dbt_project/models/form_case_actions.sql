{#- A form's blocks are rewritten with the form; a case's type can change a block's case_type.
    An archived form's actions are left out: CommCare undid their effect on the cases (unarchived, they count again). -#}
{{ config(indexes=[{'columns': ['case_id']}, {'columns': ['form_id']}],
          meta={'increment_keys': {'form_id': ['forms.form_id', 'form_case_blocks.form_id'],
                                   'case_id': ['cases.case_id']}}) }}
select
    b.form_id,
    b.case_id,
    b.action,
    coalesce(b.case_type, c.case_type) as case_type,
    b.path,
    f.received_on,
    f.user_id,
    b.payload
from {{ source('raw', 'form_case_blocks') }} as b
join {{ source('raw', 'forms') }} as f on f.form_id = b.form_id
left join {{ source('raw', 'cases') }} as c on c.case_id = b.case_id
where not f.archived
