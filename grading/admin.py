from django.contrib import admin

from grading.models import ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok"]
    search_fields = ["model"]
