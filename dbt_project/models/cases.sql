{{ config(post_hook=["alter table {{ this }} add primary key (case_id)"],
          indexes=[{'columns': ['case_type']}, {'columns': ['parent_case_id']}, {'columns': ['owner_id']}],
          meta={'increment_keys': {'case_id': ['cases.case_id']}}) }}
select
    case_id,
    case_type,
    case_name,
    external_id,
    owner_id,
    indices -> 'parent' ->> 'case_id' as parent_case_id,
    indices -> 'host' ->> 'case_id' as host_case_id,
    date_opened,
    last_modified,
    server_last_modified,
    closed,
    date_closed,
    properties
from {{ source('raw', 'cases') }}
