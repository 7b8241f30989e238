{{ config(post_hook=["alter table {{ this }} add primary key (case_type)"]) }}
with declared as (
    select
        d.case_type,
        d.view_name,
        coalesce(jsonb_agg(jsonb_build_object('name', p.property, 'column', p.column_name, 'label', p.label,
                                              'type', p.data_type) order by p.property)
                 filter (where p.property is not null), '[]'::jsonb) as properties,
        count(p.property)::integer as property_count
    from {{ source('raw', 'case_type_definitions') }} as d
    left join {{ source('raw', 'case_type_properties') }} as p on p.case_type = d.case_type
    group by d.case_type, d.view_name
),
counts as (
    select
        case_type,
        count(*) as cases_total,
        count(*) filter (where not closed) as cases_open,
        count(*) filter (where closed) as cases_closed,
        max(last_modified) as last_modified
    from {{ ref('cases') }}
    where case_type is not null
    group by case_type
)
select
    coalesce(d.case_type, c.case_type) as case_type,
    d.view_name,
    coalesce(d.properties, '[]'::jsonb) as properties,
    coalesce(d.property_count, 0) as property_count,
    coalesce(c.cases_total, 0) as cases_total,
    coalesce(c.cases_open, 0) as cases_open,
    coalesce(c.cases_closed, 0) as cases_closed,
    c.last_modified
from declared as d
full outer join counts as c on c.case_type = d.case_type
