"""Operating the production back ends: PostgreSQL, RabbitMQ, SLURM and the AiiDA profile that ties them together.

Used by ``mlqm setup``/``status``/``repair``, the deploy scripts' checks and the tests. The CLI only parses options
and prints; everything that talks to a service lives here.

=================== =======================================================================================
module              owns
=================== =======================================================================================
:mod:`.common`      :class:`ServiceError` (a problem and its fix), host and port helpers, profile-name rules
:mod:`.postgres`    database and role creation (through aiida-core's :class:`~aiida.manage.external.postgres.Postgres`)
:mod:`.rabbitmq`    broker connection, ``consumer_timeout``, the depth of a profile's process queue
:mod:`.slurm`       node state of the one-node cluster, accounting (``sacct``)
:mod:`.profiles`    embedded and production profiles (``create_profile`` as ``verdi presto`` does), computers, codes
:mod:`.checks`      every row of ``mlqm status``
=================== =======================================================================================
"""
