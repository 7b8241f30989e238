{#- The typed view of one case type. Its columns are read from the rows that
    discover wrote, at run time, so case type and property names (which come
    from the API) are only ever data: quoted as literals here, never rendered
    as template text. -#}
{% macro sql_literal(value) -%}
'{{ value | replace("'", "''") }}'
{%- endmacro %}

{% macro case_type_view(view_name) %}
{% set query %}
select d.case_type, p.property, p.column_name, p.data_type
from {{ source('raw', 'case_type_definitions') }} as d
left join {{ source('raw', 'case_type_properties') }} as p on p.case_type = d.case_type
where d.view_name = {{ sql_literal(view_name) }}
order by p.property
{% endset %}
{% if execute %}
    {% set rows = run_query(query).rows %}
{% else %}
    {% set rows = [] %}
{% endif %}
select
    c.case_id, c.case_name, c.owner_id, c.parent_case_id, c.host_case_id,
    c.date_opened, c.last_modified, c.closed, c.date_closed
{%- for row in rows if row['property'] is not none %}
    {%- set value = "c.properties ->> " ~ sql_literal(row['property']) %}
    {%- if row['data_type'] not in ('date', 'timestamptz', 'bigint', 'numeric') %}
    , {{ value }} as {{ adapter.quote(row['column_name']) }}
    {%- else %}
    , {{ adapter.quote(target.schema) }}._try_{{ row['data_type'] }}({{ value }}) as {{ adapter.quote(row['column_name']) }}
    {%- endif %}
{%- endfor %}
from {{ ref('cases') }} as c
where c.case_type = {{ sql_literal(rows[0]['case_type'] if rows else '') }}
{% endmacro %}
