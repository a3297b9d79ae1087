from django.contrib import admin

from grading import services
from grading.models import ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices decide what runs cost: every save and delete goes through the audited service."""

    list_display = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok"]
    search_fields = ["model"]

    def save_model(self, request, obj, form, change):
        services.model_price_save(price=obj, actor=request.user, created=not change)

    def delete_model(self, request, obj):
        services.model_price_delete(price=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for price in queryset:
            services.model_price_delete(price=price, actor=request.user)
