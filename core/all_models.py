"""Every table, imported once so SQLModel.metadata knows them all (migrations, schema checks)."""

import core.attachments.models
import core.desk.models
import core.incidents.models
import core.learning.models
import core.ledger.models
import core.outbox.models
import core.plans.models
import core.prevention.models
import core.registers.models
import core.reporting.models
import core.resources.models
import core.sharing.models
import core.signals.models
import core.users.models  # noqa: F401
