from django.db import migrations

# Django's automatic many-to-many tables (service ↔ professionals, service ↔ accepted health plans) have no clinic
# column for a composite foreign key, so a trigger checks that both ends belong to the same clinic.
FUNCTION = """
CREATE OR REPLACE FUNCTION cecilia_link_same_clinic() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    left_clinic bigint;
    right_clinic bigint;
BEGIN
    -- TG_ARGV: left table, left column, right table, right column
    EXECUTE format('SELECT clinic_id FROM %I WHERE id = $1', TG_ARGV[0])
        INTO left_clinic USING (to_jsonb(NEW) ->> TG_ARGV[1])::bigint;
    EXECUTE format('SELECT clinic_id FROM %I WHERE id = $1', TG_ARGV[2])
        INTO right_clinic USING (to_jsonb(NEW) ->> TG_ARGV[3])::bigint;
    IF left_clinic IS DISTINCT FROM right_clinic THEN
        RAISE EXCEPTION 'cross-clinic link in %', TG_TABLE_NAME USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
"""

LINKS = [
    ("scheduling_service_professionals", "scheduling_service", "service_id", "scheduling_professional",
     "professional_id"),
    ("scheduling_service_accepted_health_plans", "scheduling_service", "service_id", "patients_healthplan",
     "healthplan_id"),
]


def _create(table: str, left: str, left_col: str, right: str, right_col: str) -> str:
    return (
        f"CREATE TRIGGER {table}_same_clinic BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
        f"EXECUTE FUNCTION cecilia_link_same_clinic('{left}', '{left_col}', '{right}', '{right_col}');"
    )


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0002_same_clinic_foreign_keys")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS cecilia_link_same_clinic() CASCADE;"),
        *[
            migrations.RunSQL(_create(*link), f"DROP TRIGGER IF EXISTS {link[0]}_same_clinic ON {link[0]};")
            for link in LINKS
        ],
    ]
