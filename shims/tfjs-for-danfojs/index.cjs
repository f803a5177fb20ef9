// danfojs-node loads `@tensorflow/tfjs-node`. This module gives it the plain @tensorflow/tfjs
// that the project uses, so the native tfjs-node stays an optional dependency.
module.exports = require('@tensorflow/tfjs');
