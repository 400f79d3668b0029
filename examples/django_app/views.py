"""A view that creates a user and pushes a welcome job in one transaction."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_POST

from chancy import Job
from chancy.contrib.django import push


@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        user = User.objects.create_user(request.POST["username"])
        ref = push(Job(func="examples.django_app.jobs.welcome", kwargs={"username": user.username}))
        if request.POST.get("fail"):
            # Anything failing after the push undoes both the user and the job.
            raise RuntimeError("signup failed after pushing the job")
    return JsonResponse({"job_id": str(ref.identifier)})
