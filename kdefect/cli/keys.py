"""``kdefect keys``: signing keys for device artefacts (thin wrapper over ``kdefect.edge.signing``)."""

from __future__ import annotations

import click

from kdefect.cli import main


@main.group()
def keys() -> None:
    """Ed25519 keys that sign exported models (kdefect tflite --sign) for kdefect-edge --trust-key."""


@keys.command("new")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key pair of that name.")
def new(out: str, force: bool) -> None:
    """Write OUT.key (private, mode 0600: keep it off the device) and OUT.pub (public: copy it to the device)."""
    from kdefect.edge.signing import key_id, load_public_key, new_key_pair

    priv, pub = new_key_pair(out, overwrite=force)
    click.echo(f"private key {priv}  (sign with: kdefect tflite RUN --sign {priv})")
    click.echo(f"public key  {pub}  (key id {key_id(load_public_key(pub))}; on the device: "
               f"kdefect-edge --trust-key {pub.name})")
