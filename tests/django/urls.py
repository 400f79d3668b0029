"""The test project's URLs: the admin, where chancy's tables are listed."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
