/// A problem with input data or weight files. The description is the one line the user sees.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The number of elements of `dims`, or nil if the product overflows (a corrupt header).
public func elementCount(_ dims: [Int]) -> Int? {
    var n = 1
    for d in dims {
        guard d >= 0 else { return nil }
        let (m, overflow) = n.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        n = m
    }
    return n
}
