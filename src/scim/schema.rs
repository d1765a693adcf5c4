//! The schemas served: RFC 7643's core User and Group, the enterprise User extension and
//! elevate's own User extension (accounts on targets). Each attribute carries its type and
//! characteristics; validation, filters, PATCH paths and the `/Schemas` documents all read
//! them from here, so an attribute is described once.

use serde_json::{Value, json};

/// The core User schema.
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (manager, department, …).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// elevate's User extension: the principal's accounts on the targets of some provisioners.
pub const ELEVATE: &str = "urn:elevate:params:scim:schemas:extension:2.0:User";
/// A list response.
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// A PATCH request.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// A search request (`POST …/.search`).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// An error response.
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// true or false.
    Boolean,
    /// A number with a fraction.
    Decimal,
    /// A whole number.
    Integer,
    /// An xsd:dateTime.
    DateTime,
    /// Base64 bytes.
    Binary,
    /// A URI.
    Reference,
    /// An object of sub-attributes.
    Complex,
}

/// Who may change an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    /// Only the service provider.
    ReadOnly,
    /// Anyone.
    ReadWrite,
    /// Set once.
    Immutable,
    /// Written, never returned.
    WriteOnly,
}

/// When an attribute is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    /// Always.
    Always,
    /// Never.
    Never,
    /// Unless excluded.
    Default,
    /// Only when asked for.
    Request,
}

/// One attribute and its characteristics.
#[derive(Debug)]
pub struct Attribute {
    /// Its name, as the schema spells it.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it holds a list.
    pub multi: bool,
    /// Whether a resource must have it.
    pub required: bool,
    /// Whether its strings compare case-sensitively.
    pub case_exact: bool,
    /// Who may change it.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// `none`, `server` or `global`.
    pub uniqueness: &'static str,
    /// The values it may take (`type` of emails, …), as suggestions.
    pub canonical: &'static [&'static str],
    /// What a reference may point at.
    pub reference_types: &'static [&'static str],
    /// Its sub-attributes, for a complex one.
    pub sub: &'static [Attribute],
    /// What it holds.
    pub description: &'static str,
}

impl Attribute {
    const fn new(name: &'static str, kind: Kind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: "none",
            canonical: &[],
            reference_types: &[],
            sub: &[],
            description,
        }
    }
    const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, Kind::String, description)
    }
    const fn complex(
        name: &'static str,
        sub: &'static [Attribute],
        description: &'static str,
    ) -> Self {
        Self {
            sub,
            ..Self::new(name, Kind::Complex, description)
        }
    }
    const fn multi(self) -> Self {
        Self {
            multi: true,
            ..self
        }
    }
    const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }
    const fn exact(self) -> Self {
        Self {
            case_exact: true,
            ..self
        }
    }
    const fn read_only(self) -> Self {
        Self {
            mutability: Mutability::ReadOnly,
            ..self
        }
    }
    const fn immutable(self) -> Self {
        Self {
            mutability: Mutability::Immutable,
            ..self
        }
    }
    const fn unique(self) -> Self {
        Self {
            uniqueness: "server",
            ..self
        }
    }
    const fn canonical(self, canonical: &'static [&'static str]) -> Self {
        Self { canonical, ..self }
    }
    const fn references(self, reference_types: &'static [&'static str]) -> Self {
        Self {
            reference_types,
            ..self
        }
    }
    const fn always(self) -> Self {
        Self {
            returned: Returned::Always,
            ..self
        }
    }

    /// The sub-attribute called `name` (case-insensitively).
    pub fn sub_attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.sub
            .iter()
            .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
    }

    /// The attribute as a `/Schemas` document describes it.
    fn document(&self) -> Value {
        let mut doc = json!({
            "name": self.name,
            "type": match self.kind {
                Kind::String => "string",
                Kind::Boolean => "boolean",
                Kind::Decimal => "decimal",
                Kind::Integer => "integer",
                Kind::DateTime => "dateTime",
                Kind::Binary => "binary",
                Kind::Reference => "reference",
                Kind::Complex => "complex",
            },
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": self.uniqueness,
        });
        if !self.canonical.is_empty() {
            doc["canonicalValues"] = json!(self.canonical);
        }
        if self.kind == Kind::Reference {
            doc["referenceTypes"] = json!(self.reference_types);
        }
        if self.kind == Kind::Complex {
            doc["subAttributes"] = Value::Array(self.sub.iter().map(Attribute::document).collect());
        }
        doc
    }
}

/// A schema: its URN, name and attributes.
#[derive(Debug)]
pub struct Schema {
    /// Its URN.
    pub id: &'static str,
    /// Its name.
    pub name: &'static str,
    /// What it describes.
    pub description: &'static str,
    /// Its attributes.
    pub attributes: &'static [Attribute],
}

impl Schema {
    /// The attribute called `name` (case-insensitively).
    pub fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
    }

    /// The `/Schemas` document of this schema, its `meta.location` under `base`.
    pub fn document(&self, base: &str) -> Value {
        json!({
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(Attribute::document).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{}", self.id),
            },
        })
    }
}

/// `value`, `display`, `type` and `primary` of a multi-valued attribute of strings.
const fn plural(types: &'static [&'static str], value: Kind) -> [Attribute; 4] {
    [
        Attribute::new("value", value, "The value."),
        Attribute::string("display", "A human-readable name."),
        Attribute::string("type", "A label of the value's function.").canonical(types),
        Attribute::new(
            "primary",
            Kind::Boolean,
            "Whether this is the preferred value.",
        ),
    ]
}

const EMAIL_TYPES: &[&str] = &["work", "home", "other"];
const EMAILS: [Attribute; 4] = plural(EMAIL_TYPES, Kind::String);
const PHONE_TYPES: &[&str] = &["work", "home", "mobile", "fax", "pager", "other"];
const PHONES: [Attribute; 4] = plural(PHONE_TYPES, Kind::String);
const IM_TYPES: &[&str] = &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"];
const IMS: [Attribute; 4] = plural(IM_TYPES, Kind::String);
const PHOTOS: [Attribute; 4] = [
    Attribute::new("value", Kind::Reference, "The URL of a photo.").references(&["external"]),
    Attribute::string("display", "A human-readable name."),
    Attribute::string("type", "A label of the photo's function.")
        .canonical(&["photo", "thumbnail"]),
    Attribute::new(
        "primary",
        Kind::Boolean,
        "Whether this is the preferred photo.",
    ),
];
const PLAIN: [Attribute; 4] = plural(&[], Kind::String);
const CERTIFICATES: [Attribute; 4] = plural(&[], Kind::Binary);

const NAME: &[Attribute] = &[
    Attribute::string("formatted", "The full name, formatted for display."),
    Attribute::string("familyName", "The family name."),
    Attribute::string("givenName", "The given name."),
    Attribute::string("middleName", "The middle name(s)."),
    Attribute::string("honorificPrefix", "Honorific prefix(es)."),
    Attribute::string("honorificSuffix", "Honorific suffix(es)."),
];

const ADDRESS: &[Attribute] = &[
    Attribute::string("formatted", "The full mailing address."),
    Attribute::string("streetAddress", "The street address."),
    Attribute::string("locality", "The city or locality."),
    Attribute::string("region", "The state or region."),
    Attribute::string("postalCode", "The postal code."),
    Attribute::string("country", "The country (ISO 3166-1 alpha-2)."),
    Attribute::string("type", "A label of the address's function.")
        .canonical(&["work", "home", "other"]),
    Attribute::new(
        "primary",
        Kind::Boolean,
        "Whether this is the preferred address.",
    ),
];

const USER_GROUPS: &[Attribute] = &[
    Attribute::string("value", "The id of the group.").read_only(),
    Attribute::new("$ref", Kind::Reference, "The URI of the group.")
        .references(&["Group"])
        .read_only(),
    Attribute::string("display", "The group's displayName.").read_only(),
    Attribute::string("type", "How the user belongs to the group.")
        .canonical(&["direct", "indirect"])
        .read_only(),
];

const USER_ATTRIBUTES: &[Attribute] = &[
    Attribute::string(
        "userName",
        "The principal: unique, and a valid elevate principal name (ASCII letters, digits, '.', '_', '-', '@'; at most 64).",
    )
    .required()
    .unique(),
    Attribute::complex("name", NAME, "The person's name."),
    Attribute::string("displayName", "The name to display."),
    Attribute::string("nickName", "A casual name."),
    Attribute::new("profileUrl", Kind::Reference, "The URL of the person's profile.")
        .references(&["external"]),
    Attribute::string("title", "The person's title."),
    Attribute::string("userType", "The relationship to the organization."),
    Attribute::string("preferredLanguage", "The preferred language."),
    Attribute::string("locale", "The locale."),
    Attribute::string("timezone", "The time zone (IANA)."),
    Attribute::new(
        "active",
        Kind::Boolean,
        "Whether the person may act: false makes them a leaver at once.",
    ),
    Attribute {
        mutability: Mutability::WriteOnly,
        returned: Returned::Never,
        ..Attribute::string(
            "password",
            "Accepted and discarded: elevate never authenticates people by password.",
        )
    },
    Attribute::complex("emails", &EMAILS, "Email addresses.").multi(),
    Attribute::complex("phoneNumbers", &PHONES, "Phone numbers.").multi(),
    Attribute::complex("ims", &IMS, "Instant messaging addresses.").multi(),
    Attribute::complex("photos", &PHOTOS, "Photos.").multi(),
    Attribute::complex("addresses", ADDRESS, "Physical addresses.").multi(),
    Attribute::complex(
        "groups",
        USER_GROUPS,
        "The groups the user belongs to (change them through the groups).",
    )
    .multi()
    .read_only(),
    Attribute::complex("entitlements", &PLAIN, "Entitlements.").multi(),
    Attribute::complex("roles", &PLAIN, "Roles.").multi(),
    Attribute::complex("x509Certificates", &CERTIFICATES, "Certificates.").multi(),
];

const MANAGER: &[Attribute] = &[
    Attribute::string("value", "The id (or userName) of the manager's User."),
    Attribute::new("$ref", Kind::Reference, "The URI of the manager's User.").references(&["User"]),
    Attribute::string("displayName", "The manager's displayName.").read_only(),
];

const ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    Attribute::string("employeeNumber", "The employee number."),
    Attribute::string("costCenter", "The cost center."),
    Attribute::string("organization", "The organization."),
    Attribute::string("division", "The division."),
    Attribute::string("department", "The department."),
    Attribute::complex(
        "manager",
        MANAGER,
        "The manager: the approver of `manager` stages.",
    ),
];

const ACCOUNTS: &[Attribute] = &[
    Attribute::string("value", "The account on the provisioner's targets.")
        .exact()
        .required(),
    Attribute::string("type", "The provisioner's name.")
        .exact()
        .required(),
];

const ELEVATE_ATTRIBUTES: &[Attribute] = &[Attribute::complex(
    "accounts",
    ACCOUNTS,
    "The principal's account on the targets of a provisioner (else the principal's name).",
)
.multi()];

const MEMBERS: &[Attribute] = &[
    Attribute::string("value", "The id of a member User.").immutable(),
    Attribute::new("$ref", Kind::Reference, "The URI of the member.")
        .references(&["User", "Group"])
        .immutable(),
    Attribute::string("display", "The member's displayName."),
    Attribute::string("type", "The member's type (only User: groups do not nest).")
        .canonical(&["User", "Group"])
        .immutable(),
];

const GROUP_ATTRIBUTES: &[Attribute] = &[
    Attribute::string(
        "displayName",
        "The group's name as policies name it: unique, and a valid elevate group name.",
    )
    .required()
    .unique(),
    Attribute::complex("members", MEMBERS, "The members (users).").multi(),
];

/// The core User schema.
pub static USER_SCHEMA: Schema = Schema {
    id: USER,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

/// The enterprise User extension.
pub static ENTERPRISE_SCHEMA: Schema = Schema {
    id: ENTERPRISE,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRIBUTES,
};

/// elevate's User extension.
pub static ELEVATE_SCHEMA: Schema = Schema {
    id: ELEVATE,
    name: "ElevateUser",
    description: "elevate: accounts on the targets of provisioners",
    attributes: ELEVATE_ATTRIBUTES,
};

/// The core Group schema.
pub static GROUP_SCHEMA: Schema = Schema {
    id: GROUP,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

/// Every schema served.
pub static SCHEMAS: [&Schema; 4] = [
    &USER_SCHEMA,
    &GROUP_SCHEMA,
    &ENTERPRISE_SCHEMA,
    &ELEVATE_SCHEMA,
];

/// `id`: assigned by elevate, stable and opaque.
pub static ID: Attribute = Attribute::string("id", "Unique, stable and opaque identifier.")
    .exact()
    .read_only()
    .always()
    .unique();
/// `externalId`: the identity provider's own id, kept as sent.
pub static EXTERNAL_ID: Attribute =
    Attribute::string("externalId", "The identity provider's identifier.").exact();
const META_ATTRIBUTES: &[Attribute] = &[
    Attribute::string("resourceType", "The resource type.")
        .exact()
        .read_only(),
    Attribute::new("created", Kind::DateTime, "When it was created.").read_only(),
    Attribute::new("lastModified", Kind::DateTime, "When it last changed.").read_only(),
    Attribute::new("location", Kind::Reference, "Its URI.")
        .references(&["uri"])
        .read_only(),
    Attribute::string("version", "Its version (the ETag).")
        .exact()
        .read_only(),
];
/// `meta`: maintained by elevate.
pub static META: Attribute =
    Attribute::complex("meta", META_ATTRIBUTES, "Resource metadata.").read_only();

/// A resource type: its endpoint, core schema and extensions.
#[derive(Debug)]
pub struct ResourceType {
    /// `User` or `Group`.
    pub name: &'static str,
    /// Its endpoint (`/Users`).
    pub endpoint: &'static str,
    /// Its core schema.
    pub schema: &'static Schema,
    /// Its extensions.
    pub extensions: &'static [&'static Schema],
}

impl ResourceType {
    /// The schema (core or extension) with URN `urn`, case-insensitively.
    pub fn schema(&self, urn: &str) -> Option<&'static Schema> {
        std::iter::once(self.schema)
            .chain(self.extensions.iter().copied())
            .find(|schema| schema.id.eq_ignore_ascii_case(urn))
    }

    /// The `/ResourceTypes` document.
    pub fn document(&self, base: &str) -> Value {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.schema.description,
            "schema": self.schema.id,
            "schemaExtensions": self.extensions.iter().map(|extension| json!({
                "schema": extension.id,
                "required": false,
            })).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{}", self.name),
            },
        })
    }
}

/// Users.
pub static USERS: ResourceType = ResourceType {
    name: "User",
    endpoint: "/Users",
    schema: &USER_SCHEMA,
    extensions: &[&ENTERPRISE_SCHEMA, &ELEVATE_SCHEMA],
};

/// Groups.
pub static GROUPS: ResourceType = ResourceType {
    name: "Group",
    endpoint: "/Groups",
    schema: &GROUP_SCHEMA,
    extensions: &[],
};

/// The most resources a list returns in one page.
pub const MAX_RESULTS: usize = 1000;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// The `/ServiceProviderConfig` document: what this endpoint supports.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://github.com/elevate/elevate#the-directory-from-the-identity-provider-scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The bearer token in the daemon's scim.token_file, sent as 'Authorization: Bearer TOKEN'.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}
