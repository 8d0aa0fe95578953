// swift-tools-version:6.0
// ddp-train: distributed data-parallel training in Swift over Open MPI and OpenBLAS.
//
// Dependencies point one way:
//   C shims (CBLAS, CZlib, CPNG, CJPEG, CISAL, CMPI, CKernels) -> Engine -> NN, Optim, Data -> Comm -> Training -> DDPTrain (CLI)
// Only the Comm module imports CMPI.
import PackageDescription

let hot: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "ddp-train",
    products: [
        .executable(name: "ddp-train", targets: ["DDPTrain"]),
        .library(name: "DDPCore", targets: ["Engine", "NN", "Optim", "Data", "Comm", "Training"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CISAL", path: "Sources/CISAL", pkgConfig: "libisal",
                       providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(name: "Engine", dependencies: ["CBLAS", "CKernels"], swiftSettings: hot),
        .target(name: "NN", dependencies: ["Engine"], swiftSettings: hot),
        .target(name: "Optim", dependencies: ["Engine"], swiftSettings: hot),
        .target(name: "Data", dependencies: ["Engine", "CZlib", "CPNG", "CJPEG", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: hot),
        .target(name: "Comm", dependencies: ["Engine", "CMPI"], swiftSettings: hot),
        // TensorBoard's event messages, generated from tensorboard.proto (see its header).
        .target(name: "TensorBoardProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["tensorboard.proto"]),
        // ONNX's model messages, generated from onnx.proto (see its header).
        .target(name: "ONNXProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["onnx.proto"]),
        .target(name: "Training", dependencies: ["Engine", "NN", "Optim", "Data", "Comm", "CISAL", "TensorBoardProto", "ONNXProto"],
                swiftSettings: hot),
        .executableTarget(name: "DDPTrain", dependencies: [
            "Training",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: hot),
        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Optim"]),
        .testTarget(name: "DataTests", dependencies: ["Data"]),
        .target(name: "MallocCounter", path: "Tests/MallocCounter"),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "MallocCounter"]),
        .testTarget(name: "IntegrationTests", dependencies: ["Data"]),
    ],
    swiftLanguageModes: [.v5]
)
