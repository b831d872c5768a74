from django.urls import path

from classify import views

urlpatterns = [path("predict", views.predict, name="predict")]
