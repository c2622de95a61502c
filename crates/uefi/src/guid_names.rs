//! Names for the GUIDs edk2's SMM core and drivers use: protocols, SMI handler types and
//! events. From the `.dec` files of edk2-stable202211 (MdePkg, MdeModulePkg, UefiCpuPkg) and
//! PI 1.9 vol. 4, as gathered in the project's UEFI SMM reference.

use fwimage::Guid;

/// (GUID, name) pairs.
const NAMES: &[(&str, &str)] = &[
    // Protocols (MdePkg.dec, PI vol. 4 ch. 5)
    ("f4ccbfb7-f6e0-47fd-9dd4-10a8f150c191", "gEfiSmmBase2ProtocolGuid"),
    ("c2702b74-800c-4131-8746-8fb5b89ce4ac", "gEfiSmmAccess2ProtocolGuid"),
    ("843dc720-ab1e-42cb-9357-8a0078f3561b", "gEfiSmmControl2ProtocolGuid"),
    ("26eeb3de-b689-492e-80f0-be8bd7da4ba7", "gEfiSmmConfigurationProtocolGuid"),
    ("c68ed8e2-9dc6-4cbd-9d94-db65acc5c332", "gEfiSmmCommunicationProtocolGuid"),
    ("378daedc-f06b-4446-8314-40ab933c87a3", "gEfiMmCommunication2ProtocolGuid"),
    ("5b1b31a1-9562-11d2-8e3f-00a0c969723b", "gEfiLoadedImageProtocolGuid"),
    ("eb346b97-975f-4a9f-8b22-f8e92bb3d569", "gEfiSmmCpuProtocolGuid"),
    ("3242a9d8-ce70-4aa0-955d-5e7b140de4d2", "gEfiSmmCpuIo2ProtocolGuid"),
    ("1d202cab-c8ab-4d5c-94f7-3cfcc0d3d335", "gEfiSmmCpuServiceProtocolGuid"),
    ("5d5450d7-990c-4180-a803-8e63f0608307", "gEfiMmMpProtocolGuid"),
    ("69b792ea-39ce-402d-a2a6-f721de351dfe", "gEdkiiSmmMemoryAttributeProtocolGuid"),
    ("60ff8964-e906-41d0-afed-f241e974e08e", "gEfiDxeSmmReadyToLockProtocolGuid"),
    ("47b7fa8c-f4bd-4af6-8200-333086f0d2c8", "gEfiSmmReadyToLockProtocolGuid"),
    ("24e70042-d5c5-4260-8c39-0ad3aa32e93d", "gEfiSmmEndOfDxeProtocolGuid"),
    ("6e057ecf-fa99-4f39-95bc-59f9921d17e4", "gEdkiiSmmReadyToBootProtocolGuid"),
    ("296eb418-c4c8-4e05-ab59-39e8af56f00a", "gEdkiiSmmExitBootServicesProtocolGuid"),
    ("85a8ab57-0644-4110-850f-981322047070", "gEdkiiSmmLegacyBootProtocolGuid"),
    ("d326d041-bd31-4c01-b5a8-628be87f0653", "gEfiSmmFirmwareVolumeBlockProtocolGuid"),
    ("bd445d79-b7ad-4f04-9ad8-29bd2040eb3c", "gEfiLockBoxProtocolGuid"),
    ("93ba1826-dffb-45dd-82a7-e7dcaa3bbdf3", "gSmmVariableWriteGuid"),
    ("b0d8f3c1-b7de-4c11-bc89-2fb562c8c411", "gEdkiiSmmVarCheckProtocolGuid"),
    ("09576e91-6d3f-11d2-8e39-00a0c969723b", "gEfiDevicePathProtocolGuid"),
    // Child dispatch protocols (PI vol. 4 ch. 7)
    // DXE protocols SMM drivers' libraries look up at entry (MdePkg.dec, MdeModulePkg.dec,
    // UefiCpuPkg.dec; the project's UEFI SMM reference §2)
    ("0379be4e-d706-437d-b037-edb82fb772a4", "gEfiDevicePathUtilitiesProtocolGuid"),
    ("11b34006-d85b-4d0a-a290-d5a571310ef7", "gPcdProtocolGuid"),
    ("13a3f0f6-264a-3ef0-f2e0-dec512342f34", "gEfiPcdProtocolGuid"),
    ("d2b2b828-0826-48a7-b3df-983c006024f0", "gEfiStatusCodeRuntimeProtocolGuid"),
    ("3fdda605-a76e-4f46-ad29-12f4531b3d08", "gEfiMpServiceProtocolGuid"),
    ("18a3c6dc-5eea-48c8-a1c1-b53389f98999", "gEfiSmmSwDispatch2ProtocolGuid"),
    ("456d2859-a84b-4e47-a2ee-3276d886997d", "gEfiSmmSxDispatch2ProtocolGuid"),
    ("4cec368e-8e8e-4d71-8be1-958c45fc8a53", "gEfiSmmPeriodicTimerDispatch2ProtocolGuid"),
    ("ee9b8d90-c5a6-40a2-bde2-52558d33cca1", "gEfiSmmUsbDispatch2ProtocolGuid"),
    ("25566b03-b577-4cbf-958c-ed663ea24380", "gEfiSmmGpiDispatch2ProtocolGuid"),
    ("7300c4a1-43f2-4017-a51b-c81a7f40585b", "gEfiSmmStandbyButtonDispatch2ProtocolGuid"),
    ("1b1183fa-1823-46a7-8872-9c578755409d", "gEfiSmmPowerButtonDispatch2ProtocolGuid"),
    ("58dc368d-7bfa-4e77-abbc-0e29418df930", "gEfiSmmIoTrapDispatch2ProtocolGuid"),
    // SMI handler types and events (MdeModulePkg.dec, MdePkg.dec)
    ("7081e22f-cac6-4053-9468-675782cf88e5", "gEfiEventDxeDispatchGuid"),
    ("02ce967a-dd7e-4ffc-9ee7-810cf0470880", "gEfiEndOfDxeEventGroupGuid"),
    ("7ce88fb3-4bd7-4679-87a8-a8d8dee50d2b", "gEfiEventReadyToBootGuid"),
    ("27abf055-b1b8-4c26-8048-748f37baa2df", "gEfiEventExitBootServicesGuid"),
    ("2a571201-4966-47f6-8b86-f31e41f32f10", "gEfiEventLegacyBootGuid"),
    ("8f9d4825-797d-48fc-8471-845025792ef6", "gEdkiiS3SmmInitDoneGuid"),
    ("96f5296d-05f7-4f3c-8467-e456890e0cb5", "gEdkiiEndOfS3ResumeGuid"),
    ("2a3cfebd-27e8-4d0a-8b79-d688c2a3e1c0", "gEfiSmmLockBoxCommunicationGuid"),
    ("3868fc3b-7e45-43a7-906c-4ba47de1754d", "gEfiSmmFaultTolerantWriteProtocolGuid"),
    ("ed32d533-99e6-4209-9cc0-2d72cdd998a7", "gEfiSmmVariableProtocolGuid"),
    ("da1b0d11-d1a7-46c4-9dc9-f3714875c6eb", "gVarCheckPolicyLibMmiHandlerGuid"),
    // Tables
    ("6b9fd3f7-16df-45e8-bd39-b94a66541a5d", "gEdkiiPiSmmMemoryAttributesTableGuid"),
    ("4e28ca50-d582-44ac-a11f-e3d56526db34", "gEdkiiPiSmmCommunicationRegionTableGuid"),
    ("7739f24c-93d7-11d4-9a3a-0090273fc14d", "gEfiHobListGuid"),
];

/// The edk2 name of `g`, if it is a well-known one.
pub fn name(g: &Guid) -> Option<&'static str> {
    let text = g.to_string();
    NAMES.iter().find(|(s, _)| *s == text).map(|(_, n)| *n)
}

/// `g` with its name: "gEfiSmmVariableProtocolGuid (ed32d533-...)" or just the GUID.
pub fn describe(g: &Guid) -> String {
    match name(g) {
        Some(n) => format!("{n} ({g})"),
        None => g.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_guid_text() {
        for (s, _) in NAMES {
            let g: Guid = s.parse().unwrap();
            assert_eq!(&g.to_string(), s, "lowercase canonical form");
        }
        let v: Guid = "ED32D533-99E6-4209-9CC0-2D72CDD998A7".parse().unwrap();
        assert_eq!(describe(&v), "gEfiSmmVariableProtocolGuid (ed32d533-99e6-4209-9cc0-2d72cdd998a7)");
        assert_eq!(name(&Guid::default()), None);
    }
}
