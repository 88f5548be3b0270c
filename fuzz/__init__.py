"""``make fuzz``: schemathesis against the live OpenAPI document of a real ACS (issue 9).

``python -m fuzz`` seeds a throwaway database in a temporary directory, starts the ACS on
127.0.0.1 (``python -m acs.cli serve``, the same process :mod:`bench.procs` starts), and runs
``st run`` on ``/api/v1/openapi.json`` once per token profile: an unscoped admin and an
operator scoped to one organization, each against a fresh ACS so that what one profile
deletes cannot starve the other. Every run is bounded (examples per operation and seconds)
and seeded, and the checks are schemathesis' own: no 5xx, documented status codes, content
types and response schemas, schema-valid requests accepted, schema-violating ones refused.

Modules: :mod:`fuzz.run` orchestrates and summarises, :mod:`fuzz.seed` fills the database,
:mod:`fuzz.hooks` is loaded into schemathesis (``SCHEMATHESIS_HOOKS``) to give schema-valid
bodies references to rows that exist, which no schema can say.
"""
