//! The shipped definitions, compiled in.

macro_rules! builtin {
    ($($file:literal),* $(,)?) => {
        /// `(file name, TOML text)` of every shipped definition.
        pub(crate) const BUILTIN: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("../../platforms/", $file)))),*
        ];
    };
}

builtin![
    "arista_eos.toml",
    "aruba_aoscx.toml",
    "cisco_asa.toml",
    "cisco_ios.toml",
    "cisco_iosxe.toml",
    "cisco_iosxr.toml",
    "cisco_nxos.toml",
    "cumulus_linux.toml",
    "dell_force10.toml",
    "dell_os10.toml",
    "extreme_exos.toml",
    "fortinet_fortios.toml",
    "generic.toml",
    "hp_comware.toml",
    "hp_procurve.toml",
    "huawei_vrp.toml",
    "juniper_junos.toml",
    "mikrotik_routeros.toml",
    "nokia_sros.toml",
    "paloalto_panos.toml",
    "ruckus_fastiron.toml",
    "ubiquiti_edgeswitch.toml",
    "vyos.toml",
];

#[cfg(test)]
mod tests {
    use super::BUILTIN;
    use crate::platform::Platform;

    /// Every `.toml` file of `netauto-core/platforms/` is compiled in, and each is valid.
    #[test]
    fn every_definition_file_is_shipped_and_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("platforms");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut shipped: Vec<String> = BUILTIN.iter().map(|(f, _)| (*f).to_owned()).collect();
        shipped.sort();
        assert_eq!(shipped, on_disk, "list every file in builtin.rs");
        for (file, text) in BUILTIN {
            let p = Platform::from_toml(file, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                format!("{}.toml", p.name),
                *file,
                "file named after the platform"
            );
            if let Err(e) = p.check_persona() {
                panic!("{file}: {e}");
            }
        }
    }
}
