{{ config(post_hook=["alter table {{ this }} add primary key (user_id)"]) }}
select
    user_id,
    user_type,
    is_active,
    role,
    username,
    first_name,
    last_name,
    email,
    default_phone_number,
    groups,
    primary_location,
    locations,
    user_data
from {{ source('raw', 'users') }}
