// swift-tools-version:6.1
// A libFuzzer harness for the wire decoders (layers 2 and 3) and the frame protection (layer 1).
// Kept out of the root package so that its sanitizer flags never reach the normal build; see README.md.
import PackageDescription

let package = Package(
    name: "MyIMWireFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzzer",
            dependencies: [
                // A path dependency is named by its directory: the repository checkout.
                .product(name: "MyIMWire", package: "main"),
                .product(name: "MyIMSecureChannel", package: "main"),
                .product(name: "NIOCore", package: "swift-nio"),
                // For `SymmetricKey`, to build the fixed TrafficKeys of the frame checks.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // For `@_extern(c)`, to call libFuzzer's driver from `main`.
            swiftSettings: [.enableExperimentalFeature("Extern")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
