"""The functions of pipeline.yaml, served by one Python process (joint's worker protocol)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from joint_worker import FunctionError, serve  # noqa: E402


def parse(order, ctx):
    if "items" not in order:
        raise FunctionError("BadOrder", f"order {order.get('id')} has no items")
    return order


def price(order, ctx):
    return {**order, "total": sum(i["qty"] * i["unit"] for i in order["items"])}


def tax(order, ctx):
    return {**order, "tax": round(order["total"] * 0.2, 2)}


def discount(order, ctx):
    return {**order, "discount": 5 if order["total"] > 100 else 0}


def ship(order, ctx):
    return {**order, "shipping": 0 if order["total"] > 50 else 4.9}


def invoice(order, ctx):
    due = order["total"] + order["tax"] - order["discount"] + order["shipping"]
    return {**order, "due": round(due, 2)}


def notify(order, ctx):
    return {"order": order["id"], "due": order["due"], "by": ctx.instance.split("/")[-1]}


if __name__ == "__main__":
    serve({f.__name__: f for f in [parse, price, tax, discount, ship, invoice, notify]})
