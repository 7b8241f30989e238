{{ config(indexes=[{'columns': ['case_id']}, {'columns': ['referenced_case_id']}],
          meta={'increment_keys': {'case_id': ['cases.case_id']}}) }}
select
    c.case_id,
    i.key as index_name,
    nullif(i.value ->> 'case_id', '') as referenced_case_id,
    i.value ->> 'case_type' as referenced_case_type,
    coalesce(nullif(i.value ->> 'relationship', ''), 'child') as relationship
from {{ source('raw', 'cases') }} as c
cross join lateral jsonb_each(case when jsonb_typeof(c.indices) = 'object' then c.indices else '{}'::jsonb end) as i
where jsonb_typeof(i.value) = 'object'
