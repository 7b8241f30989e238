{#- Casts that return null instead of failing, so one bad value in a case
    property never breaks a typed view for the whole query. -#}
{% macro create_safe_casts() %}
{% for name, type in [('date', 'date'), ('timestamptz', 'timestamptz'), ('bigint', 'bigint'), ('numeric', 'numeric')] %}
create or replace function {{ adapter.quote(target.schema) }}._try_{{ name }}(value text) returns {{ type }}
language plpgsql immutable parallel safe as $fn$
begin
    return nullif(btrim(value), '')::{{ type }};
exception when others then
    return null;
end
$fn$;
{% endfor %}
{% endmacro %}
