"""The example project's URLs: the signup view and the admin (chancy's tables included)."""

from django.contrib import admin
from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("signup", views.signup),
    path("admin/", admin.site.urls),
]
