"""jinad: a daemon that deploys and manages Jina Flows, Pods and Peas over REST."""

__version__ = "0.1.0"
