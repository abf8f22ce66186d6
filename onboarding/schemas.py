"""Marshmallow schemas: a generic "deal won" payload -> a Deal the onboarding understands."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from onboarding.domain import GENERIC, Client, Deal


class Identifier(fields.Field):
    """A CRM identifier: a non-empty string or an integer (CRMs send both), kept as a string."""

    default_error_messages = {"invalid": "Not a valid identifier: use a string or an integer.",
                              "length": "Length must be between 1 and 100."}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        """Turn the value into a stripped string of 1 to 100 characters."""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not 1 <= len(text) <= 100:
            raise self.make_error("length")
        return text


class _Lenient(Schema):
    """Unknown fields are ignored: CRMs add fields freely."""

    class Meta:
        unknown = EXCLUDE


class DealSchema(_Lenient):
    """The deal part of the payload."""

    id = Identifier(required=True)
    title = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))


class ClientSchema(_Lenient):
    """The client part of the payload."""

    id = Identifier(required=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=300),
                                                  validate.Regexp(r"\S", error="Must not be blank.")])
    email = fields.Email(required=True, validate=validate.Length(max=320))
    docspace_user_id = fields.UUID(load_default=None, allow_none=True)


class AccountManagerSchema(_Lenient):
    """The account manager part of the payload."""

    docspace_user_id = fields.UUID(load_default=None, allow_none=True)


class DealWonSchema(_Lenient):
    """The whole generic payload: {type, deal, client, account_manager}."""

    type = fields.String(required=True)
    deal = fields.Nested(DealSchema, required=True)
    client = fields.Nested(ClientSchema, required=True)
    account_manager = fields.Nested(AccountManagerSchema, load_default=None, allow_none=True)

    @validates_schema
    def _manager_known(self, data: dict, **kwargs) -> None:
        """A payload without a manager is only acceptable when a default manager is configured."""
        manager = (data.get("account_manager") or {}).get("docspace_user_id")
        if manager is None and not self.context_default_manager:
            raise ValidationError({"docspace_user_id": ["Missing: no ACCOUNT_MANAGER_ID is configured to "
                                                        "fall back on."]}, "account_manager")

    def __init__(self, default_manager: str | None = None, **kwargs) -> None:
        """A schema that falls back on default_manager when the payload names none."""
        super().__init__(**kwargs)
        self.context_default_manager = default_manager


def to_deal(data: dict, default_manager: str | None) -> Deal:
    """A validated payload (DealWonSchema.load output) as a Deal of the generic source."""
    manager = (data.get("account_manager") or {}).get("docspace_user_id")
    client = data["client"]
    return Deal(
        source=GENERIC,
        deal_id=data["deal"]["id"],
        title=data["deal"]["title"],
        client=Client(id=client["id"], name=client["name"].strip(), email=client["email"].lower(),
                      user_id=str(client["docspace_user_id"]) if client["docspace_user_id"] else None),
        manager_user_id=str(manager) if manager else default_manager,
    )
