package v1beta1

// Defaults the CRDs declare (+kubebuilder:default markers on the fields): the API
// server writes them into every stored object, so a stored value equal to its
// default does not say that anybody chose it.
const (
	DefaultPort           = 8013 // FeatureFlagSource.spec.port
	DefaultManagementPort = 8014 // FeatureFlagSource.spec.managementPort
	DefaultOfrepPort      = 8016 // FeatureFlagSource.spec.ofrepPort
	DefaultEvaluator      = "json"
	DefaultLogFormat      = "json"
	DefaultEnvVarPrefix   = "FLAGD" // FeatureFlagSource and InProcessConfiguration envVarPrefix
	DefaultInProcessPort  = 8015    // InProcessConfiguration.spec.port
	DefaultInProcessHost  = "localhost"
	DefaultCache          = "lru"
	DefaultCacheMaxSize   = 1000
)
