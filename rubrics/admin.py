from django.contrib import admin

from rubrics.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Staff read the whole audit log here, site-wide events included; nobody edits it (the
    database refuses too: rubrics/migrations/0007_audit_event_append_only)."""

    list_display = ["at", "actor_username", "project_slug", "action", "target_label", "source"]
    list_filter = ["action", "source"]
    search_fields = ["actor_username", "project_slug", "target_label"]
    date_hierarchy = "at"
    ordering = ["-pk"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
