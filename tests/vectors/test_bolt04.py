"""BOLT 4 test vectors: Sphinx onion construction/peeling and failure-message obfuscation.

Vectors: onion-test.json and onion-error-test.json from the spec (lightning/bolts bolt04/), read from
the spec directory (see `_spec_dir`), plus intermediate values carried over as data from the BOLT 4
text: the per-hop keys of the classic 5-hop route (same session key and node ids as the JSON files)
and the "Returning Errors" trace of 04-onion-routing.md at the pinned spec commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from coincurve import PrivateKey

from ampere.ln.onion import (
    ONION_PACKET_LEN,
    create_onion,
    derive_hop_keys,
    generate_key,
    peel_onion,
    strip_length_prefix,
)
from ampere.ln.onion_failure import (
    build_raw_failure_packet,
    create_failure_packet,
    decode_failure,
    decode_failure_message,
    encode_failure_message,
    failure_code_name,
    wrap_failure,
)
from ampere.ln.onion_payload import check_hop_payload, decode_hop_payload, encode_hop_payload
from ampere.primitives.bigsize import encode_bigsize


def _spec_dir() -> Path:
    """Where the spec's bolt04 JSON vectors are: $AMPERE_SPEC_DIR/bolt04, else the shared spec
    directory beside the repository (../shared/spec/bolt04)."""
    candidates = []
    if os.environ.get("AMPERE_SPEC_DIR"):
        candidates.append(Path(os.environ["AMPERE_SPEC_DIR"]) / "bolt04")
    repo_root = Path(__file__).resolve().parents[2]
    candidates += [repo_root / "tests" / "vectors" / "bolt04", repo_root.parent / "shared" / "spec" / "bolt04"]
    for candidate in candidates:
        if (candidate / "onion-test.json").is_file():
            return candidate
    pytest.fail(f"BOLT 4 vectors not found; looked in {[str(c) for c in candidates]}")


@pytest.fixture(scope="module")
def onion_vector() -> dict:
    return json.loads((_spec_dir() / "onion-test.json").read_text())


@pytest.fixture(scope="module")
def error_vector() -> dict:
    return json.loads((_spec_dir() / "onion-error-test.json").read_text())


def _route(onion_vector: dict) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    generate = onion_vector["generate"]
    hops = [(bytes.fromhex(h["pubkey"]), strip_length_prefix(bytes.fromhex(h["payload"]))) for h in generate["hops"]]
    return bytes.fromhex(generate["session_key"]), bytes.fromhex(generate["associated_data"]), hops


# Per-hop keys for session key 0x41*32 over the five node ids of both JSON files: ephemeral public
# key (alpha), shared secret, blinding factor, rho and mu.  From the BOLT 4 test-vector section of
# earlier spec revisions (the same values other implementations check).
HOP_KEYS = [
    (
        "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619",
        "53eb63ea8a3fec3b3cd433b85cd62a4b145e1dda09391b348c4e1cd36a03ea66",
        "2ec2e5da605776054187180343287683aa6a51b4b1c04d6dd49c45d8cffb3c36",
        "ce496ec94def95aadd4bec15cdb41a740c9f2b62347c4917325fcc6fb0453986",
        "b57061dc6d0a2b9f261ac410c8b26d64ac5506cbba30267a649c28c179400eba",
    ),
    (
        "028f9438bfbf7feac2e108d677e3a82da596be706cc1cf342b75c7b7e22bf4e6e2",
        "a6519e98832a0b179f62123b3567c106db99ee37bef036e783263602f3488fae",
        "bf66c28bc22e598cfd574a1931a2bafbca09163df2261e6d0056b2610dab938f",
        "450ffcabc6449094918ebe13d4f03e433d20a3d28a768203337bc40b6e4b2c59",
        "05ed2b4a3fb023c2ff5dd6ed4b9b6ea7383f5cfe9d59c11d121ec2c81ca2eea9",
    ),
    (
        "03bfd8225241ea71cd0843db7709f4c222f62ff2d4516fd38b39914ab6b83e0da0",
        "3a6b412548762f0dbccce5c7ae7bb8147d1caf9b5471c34120b30bc9c04891cc",
        "a1f2dadd184eb1627049673f18c6325814384facdee5bfd935d9cb031a1698a5",
        "11bf5c4f960239cb37833936aa3d02cea82c0f39fd35f566109c41f9eac8deea",
        "caafe2820fa00eb2eeb78695ae452eba38f5a53ed6d53518c5c6edf76f3f5b78",
    ),
    (
        "031dde6926381289671300239ea8e57ffaf9bebd05b9a5b95beaf07af05cd43595",
        "21e13c2d7cfe7e18836df50872466117a295783ab8aab0e7ecc8c725503ad02d",
        "7cfe0b699f35525029ae0fa437c69d0f20f7ed4e3916133f9cacbb13c82ff262",
        "cbe784ab745c13ff5cffc2fbe3e84424aa0fd669b8ead4ee562901a4a4e89e9e",
        "5052aa1b3d9f0655a0932e50d42f0c9ba0705142c25d225515c45f47c0036ee9",
    ),
    (
        "03a214ebd875aab6ddfd77f22c5e7311d7f77f17a169e599f157bbcdae8bf071f4",
        "b5756b9b542727dbafc6765a49488b023a725d631af688fc031217e90770c328",
        "c96e00dddaf57e7edcd4fb5954be5b65b09f17cb6d20651b4e90315be5779205",
        "034e18b8cc718e8af6339106e706c52d8df89e2b1f7e9142d996acf88df8799b",
        "8e45e5c61c2b24cb6382444db6698727afb063adecd72aada233d4bf273d975a",
    ),
]

# From the "Returning Errors" trace in BOLT #4 (lightning/bolts 04-onion-routing.md at the pinned
# spec commit a3772650): failure from hop 4, incorrect_or_unknown_payment_details with a 300-byte
# TLV record, padded so that failure_len + pad_len = 1024.
TRACE_UM_KEY = "4da7f2923edce6c2d85987d1d9fa6d88023e6c3a9c3d20f07d3b10b61a78d646"
TRACE_RAW_PACKET_HMAC = "fda7e11974f78ca6cc456f2d17ae54463664696e93842548245dd2a2c513a626"
TRACE_HOPS = [  # (shared_secret, ammag_key, obfuscated packet after this hop), erring hop first
    (  # node 4
        "b5756b9b542727dbafc6765a49488b023a725d631af688fc031217e90770c328",
        "2f36bb8822e1f0d04c27b7d8bb7d7dd586e032a3218b8d414afbba6f169a4d68",
        (
            "146e94a9086dbbed6a0ab6932d00c118a7195dbf69b7d7a12b0e6956fc54b5e0a989f165b5f12fd45edd73a5b0c48630"
            "ff5be69500d3d82a29c0803f0a0679a6a073c33a6fb8250090a3152eba3f11a85184fa87b67f1b0354d6f48e3b342e33"
            "2a17b7710f342f342a87cf32eccdf0afc2160808d58abb5e5840d2c760c538e63a6f841970f97d2e6fe5b8739dc45e2f"
            "7f5f532f227bcc2988ab0f9cc6d3f12909cd5842c37bc8c7608475a5ebbe10626d5ecc1f3388ad5f645167b44a4d166f"
            "87863fe34918cea25c18059b4c4d9cb414b59f6bc50c1cea749c80c43e2344f5d23159122ed4ab9722503b212016470d"
            "9610b46c35dbeebaf2e342e09770b38392a803bc9d2e7c8d6d384ffcbeb74943fe3f64afb2a543a6683c7db3088441c5"
            "31eeb4647518cb41992f8954f1269fb969630944928c2d2b45593731b5da0c4e70d04a0a57afe4af42e99912fbb4f888"
            "3a5ecb9cb29b883cb6bfa0f4db2279ff8c6d2b56a232f55ba28fe7dfa70a9ab0433a085388f25cce8d53de6a2fbd7546"
            "377d6ede9027ad173ba1f95767461a3689ef405ab608a21086165c64b02c1782b04a6dba2361a7784603069124e12f2f"
            "6dcb1ec7612a4fbf94c0e14631a2bef6190c3d5f35e0c4b32aa85201f449d830fd8f782ec758b0910428e3ec3ca1dba3"
            "b6c7d89f69e1ee1b9df3dfbbf6d361e1463886b38d52e8f43b73a3bd48c6f36f5897f514b93364a31d49d1d506340b13"
            "15883d425cb36f4ea553430d538fd6f3596d4afc518db2f317dd051abc0d4bfb0a7870c3db70f19fe78d6604bbf088fc"
            "b4613f54e67b038277fedcd9680eb97bdffc3be1ab2cbcbafd625b8a7ac34d8c190f98d3064ecd3b95b8895157c6a37f"
            "31ef4de094b2cb9dbf8ff1f419ba0ecacb1bb13df0253b826bec2ccca1e745dd3b3e7cc6277ce284d649e7b828572773"
            "5ff4ef6cca6c18e2714f4e2a1ac67b25213d3bb49763b3b94e7ebf72507b71fb2fe0329666477ee7cb7ebd6b88ad5add"
            "8b217188b1ca0fa13de1ec09cc674346875105be6e0e0d6c8928eb0df23c39a639e04e4aedf535c4e093f08b2c905a14"
            "f25c0c0fe47a5a1535ab9eae0d9d67bdd79de13a08d59ee05385c7ea4af1ad3248e61dd22f8990e9e99897d653dd7b1b"
            "1433a6d464ea9f74e377f2d8ce99ba7dbc753297644234d25ecb5bd528e2e2082824681299ac30c05354baaa9c3967d8"
            "6d7c07736f87fc0f63e5036d47235d7ae12178ced3ae36ee5919c093a02579e4fc9edad2c446c656c790704bfc8e2c49"
            "1a42500aa1d75c8d4921ce29b753f883e17c79b09ea324f1f32ddf1f3284cd70e847b09d90f6718c42e5c94484cc9cbb"
            "0df659d255630a3f5a27e7d5dd14fa6b974d1719aa98f01a20fb4b7b1c77b42d57fab3c724339d459ee4a1c6b5d3bd4e"
            "08624c786a257872acc9ad3ff62222f2265a658d9f2a007229a5293b67ec91c84c4b4407c228434bad8a815ca9b256c7"
            "76bd2c9f"
        ),
    ),
    (  # node 3
        "21e13c2d7cfe7e18836df50872466117a295783ab8aab0e7ecc8c725503ad02d",
        "cd9ac0e09064f039fa43a31dea05f5fe5f6443d40a98be4071af4a9d704be5ad",
        (
            "7512354d6a26781d25e65539772ba049b7ed7c530bf75ab7ef80cf974b978a07a1c3dabc61940011585323f70fa98cfa"
            "1d4c868da30b1f751e44a72d9b3f79809c8c51c9f0843daa8fe83587844fedeacb7348362003b31922cbb4d6169b2087"
            "b6f8d192d9cfe5363254cd1fde24641bde9e422f170c3eb146f194c48a459ae2889d706dc654235fa9dd20307ea54091"
            "d09970bf956c067a3bcc05af03c41e01af949a131533778bf6ee3b546caf2eabe9d53d0fb2e8cc952b7e0f5326a69ed2"
            "e58e088729a1d85971c6b2e129a5643f3ac43da031e655b27081f10543262cf9d72d6f64d5d96387ac0d43da3e3a03da"
            "0c309af121dcf3e99192efa754eab6960c256ffd4c546208e292e0ab9894e3605db098dc16b40f17c320aa4a0e42fc8b"
            "105c22f08c9bc6537182c24e32062c6cd6d7ec7062a0c2c2ecdae1588c82185cdc61d874ee916a7873ac54cddf929354"
            "f307e870011704a0e9fbc5c7802d6140134028aca0e78a7e2f3d9e5c7e49e20c3a56b624bfea51196ec9e88e4e56be38"
            "ff56031369f45f1e03be826d44a182f270c153ee0d9f8cf9f1f4132f33974e37c7887d5b857365c873cb218cbf20d4be"
            "3abdb2a2011b14add0a5672e01e5845421cf6dd6faca1f2f443757aae575c53ab797c2227ecdab03882bbbf4599318ce"
            "fafa72fa0c9a0f5a51d13c9d0e5d25bfcfb0154ed25895260a9df8743ac188714a3f16960e6e2ff663c08bffda41743d"
            "50960ea2f28cda0bc3bd4a180e297b5b41c700b674cb31d99c7f2a1445e121e772984abff2bbe3f42d757ceeda3d03fb"
            "1ffe710aecabda21d738b1f4620e757e57b123dbc3c4aa5d9617dfa72f4a12d788ca596af14bea583f502f16fdc13a5e"
            "739afb0715424af2767049f6b9aa107f69c5da0e85f6d8c5e46507e14616d5d0b797c3dea8b74a1b12d4e47ba7f57f09"
            "d515f6c7314543f78b5e85329d50c5f96ee2f55bbe0df742b4003b24ccbd4598a64413ee4807dc7f2a9c0b92424e4ae1"
            "b418a3cdf02ea4da5c3b12139348aa7022cc8272a3a1714ee3e4ae111cffd1bdfd62c503c80bdf27b2feaea0d5ab8fe0"
            "0f9cec66e570b00fd24b4a2ed9a5f6384f148a4d6325110a41ca5659ebc5b98721d298a52819b6fb150f273383f1c575"
            "4d320be428941922da790e17f482989c365c078f7f3ae100965e1b38c052041165295157e1a7c5b7a57671b842d4d85a"
            "7d971323ad1f45e17a16c4656d889fc75c12fc3d8033f598306196e29571e414281c5da19c12605f48347ad5b4648e37"
            "1757cbe1c40adb93052af1d6110cfbf611af5c8fc682b7e2ade3bfca8b5c7717d19fc9f97964ba6025aebbc91a6671e2"
            "59949dcf40984342118de1f6b514a7786bd4f6598ffbe1604cef476b2a4cb1343db608aca09d1d38fc23e98ee9c65e7f"
            "6023a8d1e61fd4f34f753454bd8e858c8ad6be6403edc599c220e03ca917db765980ac781e758179cd93983e9c1e769e"
            "4241d47c"
        ),
    ),
    (  # node 2
        "3a6b412548762f0dbccce5c7ae7bb8147d1caf9b5471c34120b30bc9c04891cc",
        "1bf08df8628d452141d56adfd1b25c1530d7921c23cecfc749ac03a9b694b0d3",
        (
            "145bc1c63058f7204abbd2320d422e69fb1b3801a14312f81e5e29e6b5f4774cfed8a25241d3dfb7466e749c1b326155"
            "9e49090853612e07bd669dfb5f4c54162fa504138dabd6ebcf0db8017840c35f12a2cfb84f89cc7c8959a6d51815b1d2"
            "c5136cedec2e4106bb5f2af9a21bd0a02c40b44ded6e6a90a145850614fb1b0eef2a03389f3f2693bc8a755630fc81ff"
            "f1d87a147052863a71ad5aebe8770537f333e07d841761ec448257f948540d8f26b1d5b66f86e073746106dfdbb86ac9"
            "475acf59d95ece037fba360670d924dce53aaa74262711e62a8fc9eb70cd8618fbedae22853d3053c7f10b1a6f75369d"
            "7f73c419baa7dbf9f1fc5895362dcc8b6bd60cca4943ef7143956c91992119bccbe1666a20b7de8a2ff30a46112b53a6"
            "bb79b763903ecbd1f1f74952fb1d8eb0950c504df31fe702679c23b463f82a921a2c931500ab08e686cffb2d87258d25"
            "4fb17843959cccd265a57ba26c740f0f231bb76df932b50c12c10be90174b37d454a3f8b284c849e86578a6182c4a7b2"
            "e47dd57d44730a1be9fec4ad07287a397e28dce4fda57e9cdfdb2eb5afdf0d38ef19d982341d18d07a556bb16c1416f4"
            "80a396f278373b8fd9897023a4ac506e65cf4c306377730f9c8ca63cf47565240b59c4861e52f1dab84d938e96fb3182"
            "0064d534aca05fd3d2600834fe4caea98f2a748eb8f200af77bd9fbf46141952b9ddda66ef0ebea17ea1e7bb5bce65b6"
            "e71554c56dd0d4e14f4cf74c77a150776bf31e7419756c71e7421dc22efe9cf01de9e19fc8808d5b525431b944400db1"
            "21a77994518d6025711cb25a18774068bba7faaa16d8f65c91bec8768848333156dcb4a08dfbbd9fef392da3e4de13d4"
            "d74e83a7d6e46cfe530ee7a6f711e2caf8ad5461ba8177b2ef0a518baf9058ff9156e6aa7b08d938bd8d1485a787809d"
            "7b4c8aed97be880708470cd2b2cdf8e2f13428cc4b04ef1f2acbc9562f3693b948d0aa94b0e6113cafa684f8e4a67dc4"
            "31dfb835726874bef1de36f273f52ee694ec46b0700f77f8538067642a552968e866a72a3f2031ad116663ac17b172b4"
            "46c5bc705b84777363a9a3fdc6443c07b2f4ef58858122168d4ebbaee920cefc312e1cea870ed6e15eec046ab2073bbf"
            "08b0a3366f55cfc6ad4681a12ab0946534e7b6f90ea8992d530ec3daa6b523b3cf03101c60cadd914f30dec932c1ef43"
            "41b5a8efac3c921e203574cfe0f1f83433fddb8ccfd273f7c3cab7bc27efe3bb61fdccd5146f1185364b9b621e7fb2b7"
            "4b51f5ee6be72ab6ff46a6359dc2c855e61469724c1dbeb273df9d2e1c1fb74891239c0019dc12d5c7535f7238f963b7"
            "61d7102b585372cf021b64c4fc85bfb3161e59d2e298bba44cfd34d6859d9dba9dc6271e5047d525468c814f2ae43847"
            "4b0a977273036da1a2292f88fcfb89574a6bdca1185b40f8aa54026d5926725f99ef028da1be892e3586361efe15f4a1"
            "48ff1bc9"
        ),
    ),
    (  # node 1
        "a6519e98832a0b179f62123b3567c106db99ee37bef036e783263602f3488fae",
        "59ee5867c5c151daa31e36ee42530f429c433836286e63744f2020b980302564",
        (
            "1b4b09a935ce7af95b336baae307f2b400e3a7e808d9b4cf421cc4b3955620acb69dcdb656128dae8857adbd4e6b37fb"
            "b1be9c1f2f02e61e9e59a630c4c77cf383cb37b07413aa4de2f2fbf5b40ae40a91a8f4c6d74aeacef1bb1be4ecbc26ec"
            "2c824d2bc45db4b9098e732a769788f1cff3f5b41b0d25c132d40dc5ad045ef0043b15332ca3c5a09de2cdb17455a0f8"
            "2a8f20da08346282823dab062cdbd2111e238528141d69de13de6d83994fbc711e3e269df63a12d3a4177c5c149150eb"
            "4dc2f589cd8acabcddba14dec3b0dada12d663b36176cd3c257c5460bab93981ad99f58660efa9b31d7e63b399153296"
            "95b3fa60e0a3bdb93e7e29a54ca6a8f360d3848866198f9c3da3ba958e7730847fe1e6478ce8597848d3412b4ae48b06"
            "e05ba9a104e648f6eaf183226b5f63ed2e68f77f7e38711b393766a6fab7921b03eba82b5d7cb78e34dc961948d6161e"
            "add7cf5d95d9c56df2ff5faa6ccf85eacdc9ff2fc3abafe41c365a5bd14fd486d6b5e2f24199319e7813e02e798877ff"
            "e31a70ae2398d9e31b9e3727e6c1a3c0d995c67d37bb6e72e9660aaaa9232670f382add2edd468927e3303b614267254"
            "6997fe105583e7c5a3c4c2b599731308b5416e6c9a3f3ba55b181ad0439d3535356108b059f2cb8742eed7a58d4eba9f"
            "e79eaa77c34b12aff1abdaea93197aabd0e74cb271269ca464b3b06aef1d6573df5e1224179616036b368677f2647937"
            "6681b772d3760e871d99efd34cca5cd6beca95190d967da820b21e5bec60082ea46d776b0517488c84f26d12873912d1"
            "f68fafd67bcf4c298e43cfa754959780682a2db0f75f95f0598c0d04fd014c50e4beb86a9e37d95f2bba7e5065ae052d"
            "c306555bca203d104c44a538b438c9762de299e1c4ad30d5b4a6460a76484661fc907682af202cd69b9a4473813b2fdc"
            "1142f1403a49b7e69a650b7cde9ff133997dcc6d43f049ecac5fce097a21e2bce49c810346426585e3a5a18569b4cddd"
            "5ff6bdec66d0b69fcbc5ab3b137b34cc8aefb8b850a764df0e685c81c326611d901c392a519866e132bbb73234f6a358"
            "ba284fbafb21aa3605cacbaf9d0c901390a98b7a7dac9d4f0b405f7291c88b2ff45874241c90ac6c5fc895a440453c34"
            "4d3a365cb929f9c91b9e39cb98b142444aae03a6ae8284c77eb04b0a163813d4c21883df3c0f398f47bf127b5525f222"
            "107a2d8fe55289f0cfd3f4bbad6c5387b0594ef8a966afc9e804ccaf75fe39f35c6446f7ee076d433f2f8a44dba1515a"
            "cc78e589fa8c71b0a006fe14feebd51d0e0aa4e51110d16759eee86192eee90b34432130f387e0ccd2ee71023f1f641c"
            "ddb571c690107e08f592039fe36d81336a421e89378f351e633932a2f5f697d25b620ffb8e84bb6478e9bd229bf3b164"
            "b48d754ae97bd23f319e3c56b3bcdaaeb3bd7fc02ec02066b324cb72a09b6b43dec1097f49d69d3c138ce6f1a6402898"
            "baf7568c"
        ),
    ),
    (  # node 0
        "53eb63ea8a3fec3b3cd433b85cd62a4b145e1dda09391b348c4e1cd36a03ea66",
        "3761ba4d3e726d8abb16cba5950ee976b84937b61b7ad09e741724d7dee12eb5",
        (
            "2dd2f49c1f5af0fcad371d96e8cddbdcd5096dc309c1d4e110f955926506b3c03b44c192896f45610741c85ed4074212"
            "537e0c118d472ff3a559ae244acd9d783c65977765c5d4e00b723d00f12475aafaafff7b31c1be5a589e6e25f8da2959"
            "107206dd42bbcb43438129ce6cce2b6b4ae63edc76b876136ca5ea6cd1c6a04ca86eca143d15e53ccdc9e23953e49dc2"
            "f87bb11e5238cd6536e57387225b8fff3bf5f3e686fd08458ffe0211b87d64770db9353500af9b122828a006da754cf9"
            "79738b4374e146ea79dd93656170b89c98c5f2299d6e9c0410c826c721950c780486cd6d5b7130380d7eaff994a8503a"
            "8fef3270ce94889fe996da66ed121741987010f785494415ca991b2e8b39ef2df6bde98efd2aec7d251b2772485194c8"
            "368451ad49c2354f9d30d95367bde316fec6cbdddc7dc0d25e99d3075e13d3de0822669861dafcd29de74eac48b64411"
            "987285491f98d78584d0c2a163b7221ea796f9e8671b2bb91e38ef5e18aaf32c6c02f2fb690358872a1ed28166172631"
            "a82c2568d23238017188ebbd48944a147f6cdb3690d5f88e51371cb70adf1fa02afe4ed8b581afc8bcc5104922843a55"
            "d52acde09bc9d2b71a663e178788280f3c3eae127d21b0b95777976b3eb17be40a702c244d0e5f833ff49dae6403ff44"
            "b131e66df8b88e33ab0a58e379f2c34bf5113c66b9ea8241fc7aa2b1fa53cf4ed3cdd91d407730c66fb039ef3a36d405"
            "0dde37d34e80bcfe02a48a6b14ae28227b1627b5ad07608a7763a531f2ffc96dff850e8c583461831b19feffc783bc1b"
            "eab6301f647e9617d14c92c4b1d63f5147ccda56a35df8ca4806b8884c4aa3c3cc6a174fdc2232404822569c01aba686"
            "c1df5eecc059ba97e9688c8b16b70f0d24eacfdba15db1c71f72af1b2af85bd168f0b0800483f115eeccd9b02adf03bd"
            "d4a88eab03e43ce342877af2b61f9d3d85497cd1c6b96674f3d4f07f635bb26add1e36835e321d70263b1c04234e2221"
            "24dad30ffb9f2a138e3ef453442df1af7e566890aedee568093aa922dd62db188aa8361c55503f8e2c2e6ba93de744b5"
            "5c15260f15ec8e69bb01048ca1fa7bbbd26975bde80930a5b95054688a0ea73af0353cc84b997626a987cc06a517e18f"
            "91e02908829d4f4efc011b9867bd9bfe04c5f94e4b9261d30cc39982eb7b250f12aee2a4cce0484ff34eebba89bc6e35"
            "bd48d3968e4ca2d77527212017e202141900152f2fd8af0ac3aa456aae13276a13b9b9492a9a636e18244654b3245f07"
            "b20eb76b8e1cea8c55e5427f08a63a16b0a633af67c8e48ef8e53519041c9138176eb14b8782c6c2ee76146b8490b979"
            "78ee73cd0104e12f483be5a4af414404618e9f6633c55dda6f22252cb793d3d16fae4f0e1431434e7acc8fa2c009d4f6"
            "e345ade172313d558a4e61b4377e31b8ed4e28f7cd13a7fe3f72a409bc3bdabfe0ba47a6d861e21f64d2fac706dab18b"
            "3e546df4"
        ),
    ),
]


# --- onion-test.json ---------------------------------------------------------------------------


def test_hop_keys_match_spec(onion_vector):
    session_key, _, hops = _route(onion_vector)
    keys = derive_hop_keys(session_key, [pubkey for pubkey, _ in hops])
    assert len(keys) == len(HOP_KEYS)
    for index, (key, (alpha, secret, blinding, rho, mu)) in enumerate(zip(keys, HOP_KEYS)):
        assert key.ephemeral_pubkey.hex() == alpha, f"hop {index} ephemeral key"
        assert key.shared_secret.hex() == secret, f"hop {index} shared secret"
        assert key.blinding_factor.hex() == blinding, f"hop {index} blinding factor"
        assert generate_key(b"rho", key.shared_secret).hex() == rho, f"hop {index} rho"
        assert generate_key(b"mu", key.shared_secret).hex() == mu, f"hop {index} mu"


def test_create_onion_matches_vector(onion_vector, error_vector):
    session_key, assoc_data, hops = _route(onion_vector)
    packet, shared_secrets = create_onion(session_key, hops, assoc_data)
    assert len(packet) == ONION_PACKET_LEN
    assert packet.hex() == onion_vector["onion"]
    # Both JSON files use the same session key and node ids: the shared secrets agree.
    assert [s.hex() for s in shared_secrets] == [h["hop_shared_secret"] for h in error_vector["generate"]["hops"]]


def test_peel_every_hop(onion_vector):
    session_key, assoc_data, hops = _route(onion_vector)
    packet = bytes.fromhex(onion_vector["onion"])
    privkeys = [bytes.fromhex(k) for k in onion_vector["decode"]]
    assert len(privkeys) == len(hops)
    for index, (privkey, (pubkey, payload)) in enumerate(zip(privkeys, hops)):
        assert PrivateKey(privkey).public_key.format() == pubkey
        assert packet[1:34].hex() == HOP_KEYS[index][0], f"ephemeral key seen by hop {index}"
        peeled = peel_onion(privkey, packet, assoc_data)
        assert peeled.payload == payload, f"hop {index} payload"
        assert peeled.shared_secret.hex() == HOP_KEYS[index][1]
        if index < len(hops) - 1:
            assert not peeled.is_final
            assert len(peeled.next_onion) == ONION_PACKET_LEN
            packet = peeled.next_onion
        else:
            assert peeled.is_final and peeled.next_onion is None


def test_vector_payloads_decode(onion_vector):
    _, _, hops = _route(onion_vector)
    decoded = [decode_hop_payload(payload) for _, payload in hops]
    # Intermediate hops: amount, CLTV and the outgoing channel (scids 1..4).
    for index, payload in enumerate(decoded[:-1]):
        assert payload.short_channel_id == index + 1
        check_hop_payload(payload, is_final=False)
    assert [p.amt_to_forward for p in decoded] == [15000, 14000, 12500, 10000, 10000]
    assert [p.outgoing_cltv_value for p in decoded] == [1500, 1400, 1250, 1000, 1000]
    # hops[1] carries an unknown odd record (type 513, 60 bytes), which is kept, not rejected.
    assert [t for t, _ in decoded[1].extra_tlvs] == [513]
    assert len(decoded[1].extra_tlvs[0][1]) == 60
    final = decoded[-1]
    check_hop_payload(final, is_final=True)
    assert final.short_channel_id is None
    assert final.payment_secret.hex() == "24a33562c54507a9334e79f0dc4f17d407e6d7c61f0e2f3d0d38599502f61704"
    assert final.total_msat == 10000
    assert [t for t, _ in final.extra_tlvs] == [301]
    for (_, payload), parsed in zip(hops, decoded):
        assert encode_hop_payload(parsed) == payload


# --- onion-error-test.json ---------------------------------------------------------------------


def test_error_vector(error_vector):
    generate = error_vector["generate"]
    hops = generate["hops"]
    secrets = [bytes.fromhex(h["hop_shared_secret"]) for h in hops]
    for index, hop in enumerate(hops):
        assert generate_key(b"ammag", secrets[index]).hex() == hop["ammag_key"], f"hop {index} ammag"
    erring = hops[-1]
    assert generate_key(b"um", secrets[-1]).hex() == erring["um_key"]
    failure_message = bytes.fromhex(generate["failure_message"])
    raw = build_raw_failure_packet(secrets[-1], failure_message)
    # "the payload omits the HMAC": failure_len || failuremsg || pad_len || pad (256 bytes of msg+pad).
    assert raw[32:].hex() == erring["payload"]
    packet = create_failure_packet(secrets[-1], failure_message)
    assert packet == wrap_failure(secrets[-1], raw)
    for secret in reversed(secrets[:-1]):
        packet = wrap_failure(secret, packet)
    assert packet.hex() == error_vector["errorpacket"]

    decoded = decode_failure(secrets, packet)
    assert decoded.erring_index == len(hops) - 1
    assert decoded.failure_message == failure_message
    assert failure_code_name(decoded.failure_code) == "temporary_node_failure"


# --- BOLT 4 "Returning Errors" trace -----------------------------------------------------------


def _trace_failure_message() -> tuple[bytes, bytes]:
    # failure_message = incorrect_or_unknown_payment_details, htlc_msat = 100, height = 800000,
    # tlv data type 34001, value = 300 bytes of 128.
    tlv = encode_bigsize(34001) + encode_bigsize(300) + bytes([128]) * 300
    message = encode_failure_message("incorrect_or_unknown_payment_details", extra=tlv, htlc_msat=100, height=800000)
    return message, tlv


def test_error_trace_with_tlv_and_1024_padding():
    message, tlv = _trace_failure_message()
    assert message[:14].hex() == "400f0000000000000064000c3500"
    assert len(message) == 320
    erring_secret = bytes.fromhex(TRACE_HOPS[0][0])
    assert generate_key(b"um", erring_secret).hex() == TRACE_UM_KEY
    raw = build_raw_failure_packet(erring_secret, message, pad_to=1024)
    assert raw[:32].hex() == TRACE_RAW_PACKET_HMAC
    assert len(raw) == 32 + 2 + 320 + 2 + 704

    packet = raw
    for index, (secret_hex, ammag_hex, expected_hex) in enumerate(TRACE_HOPS):
        secret = bytes.fromhex(secret_hex)
        assert generate_key(b"ammag", secret).hex() == ammag_hex
        packet = wrap_failure(secret, packet)
        assert packet.hex() == expected_hex, f"packet after node {4 - index}"

    route_secrets = [bytes.fromhex(s) for s, _, _ in reversed(TRACE_HOPS)]
    decoded = decode_failure(route_secrets, packet)
    assert decoded.erring_index == 4
    assert decoded.failure_message == message
    parsed = decode_failure_message(decoded.failure_message)
    assert parsed.name == "incorrect_or_unknown_payment_details"
    assert parsed.fields == {"htlc_msat": 100, "height": 800000}
    assert parsed.extra == tlv


def test_trace_secrets_are_the_vector_route(onion_vector):
    session_key, _, hops = _route(onion_vector)
    keys = derive_hop_keys(session_key, [pubkey for pubkey, _ in hops])
    assert [k.shared_secret.hex() for k in reversed(keys)] == [s for s, _, _ in TRACE_HOPS]
