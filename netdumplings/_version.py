"""The package version, apart so that every stage can name it without importing the
package's root (which loads the chef API)."""

__version__ = "1.0.0.dev0"
