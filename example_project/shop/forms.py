from __future__ import annotations

from django import forms

PRODUCTS = [("teapot", "Teapot"), ("mug", "Mug"), ("kettle", "Kettle")]
FAILURES = [
    ("0", "works at once"),
    ("1", "fails once, then a retry succeeds"),
    ("3", "always fails: dead-lettered after 2 retries"),
]


class OrderForm(forms.Form):
    """Handled by a sync view."""

    customer = forms.CharField(max_length=100, initial="Ada")
    product = forms.ChoiceField(choices=PRODUCTS)
    quantity = forms.IntegerField(min_value=1, max_value=99, initial=1)
    stock_service = forms.ChoiceField(choices=FAILURES, initial="0", label="Stock service")
    ask_review = forms.BooleanField(
        required=False, initial=True, label="Ask for a review 30 seconds later (delayed job)"
    )


class CrunchForm(forms.Form):
    """Handled by an async view."""

    limit = forms.IntegerField(min_value=10, max_value=20_000_000, initial=2_000_000)
    jobs = forms.IntegerField(min_value=1, max_value=20, initial=4, label="How many jobs")


class ImagesForm(forms.Form):
    """Sends one long job that reports its progress."""

    count = forms.IntegerField(min_value=1, max_value=1000, initial=40, label="Images")
