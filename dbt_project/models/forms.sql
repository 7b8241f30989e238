{{ config(post_hook=["alter table {{ this }} add primary key (form_id)"],
          indexes=[{'columns': ['xmlns']}, {'columns': ['user_id']}, {'columns': ['received_on']}],
          meta={'increment_keys': {'form_id': ['forms.form_id']}}) }}
select
    form_id,
    xmlns,
    form_name,
    app_id,
    user_id,
    username,
    received_on,
    time_start,
    time_end,
    archived,
    device_id,
    app_version,
    form
from {{ source('raw', 'forms') }}
