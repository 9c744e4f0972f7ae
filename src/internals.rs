//! The library items labctl's own integration tests (tests/) and fuzz targets (fuzz/) call
//! directly: the loaders, the template engine, the vault and the site compiler, each at the path
//! it has inside the crate. Not a stable API (hidden from the docs); everything else stays
//! private, so the compiler still reports what nothing uses.

pub mod error {
    pub use crate::error::Diags;
}

pub mod facts {
    pub mod host {
        pub use crate::facts::host::{parse, template_vars};
    }
}

pub mod inventory {
    pub use crate::inventory::{Decrypt, Inventory, VarLayer, VaultFail};
    pub mod vars {
        pub use crate::inventory::vars::parse_extra_var;
    }
}

pub mod plan {
    pub use crate::plan::Step;
}

pub mod sh {
    pub use crate::sh::q;
}

pub mod site {
    pub use crate::site::{Role, Site};
    pub mod select {
        pub use crate::site::select::{compile, Compiled, Item, Selection};
    }
    pub mod sources {
        pub use crate::site::sources::{Gathered, Sources};
    }
}

pub mod template {
    pub use crate::template::{Ctx, Engine};
    pub mod vars {
        pub use crate::template::vars::resolve;
    }
}

pub mod vault {
    pub use crate::vault::Keyring;
    pub mod ansible {
        pub use crate::vault::ansible::parse;
    }
    pub mod sops {
        pub use crate::vault::sops::{decrypt, is_sops_document};
    }
}

pub mod yaml {
    pub use crate::yaml::{parse_node_vaults, NodeV};
}
