/// The shape of one sample, or of a whole tensor, row-major. Up to 4-D: (C, H, W) samples become
/// (N, C, H, W) batches when CNN layers arrive.
public struct Shape: Equatable, CustomStringConvertible, Sendable {
    public let dims: [Int]
    /// Number of elements (stored: kernels read it every call).
    public let count: Int

    public init(_ dims: [Int]) {
        self.dims = dims
        count = dims.reduce(1, *)
    }
    public init(_ dims: Int...) { self.init(dims) }
    public var rank: Int { dims.count }

    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
