"""Identity of the decode op (docs/ssvq_op.md), shared by the exporter and every backend that reads its graphs."""

DOMAIN = "ai.ssvq"
DOMAIN_VERSION = 1
OP_TYPE = "SSVQDecode"
