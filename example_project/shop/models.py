"""A tiny shop: orders whose follow-up work (confirmation, invoice, stock) runs as jobs."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    customer = models.CharField(max_length=100)
    product = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    """Set by the async actor ``send_order_confirmation``."""
    invoice_number = models.CharField(max_length=40, blank=True, default="")
    """Set by the sync actor ``generate_invoice``."""
    stock_checks = models.PositiveIntegerField(default=0)
    """How many times the flaky actor ``reserve_stock`` ran for this order."""
    stock_reserved = models.BooleanField(default=False)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"Order #{self.pk}: {self.quantity} x {self.product} for {self.customer}"
